"""``streamflow ui``: serve the web UI (runs, live run pages, cancel/resume/rerun).

It binds 127.0.0.1 by default and requires a token: generated at start (or read from a
0600 ``--token-file``) and printed once, as the URL to open, on one line of stdout:
``streamflow ui: http://127.0.0.1:PORT/?token=TOKEN``. See docs/ui.md (reaching it on a
remote machine through an SSH tunnel, security).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

__all__ = ["register", "run"]


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}: expected 0 to 65535") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}: expected 0 to 65535")
    return port


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ui``."""
    from streamflow.cli.main import add_bus_options

    parser = subparsers.add_parser("ui", help="serve the web UI: watch, cancel, resume and rerun runs")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1; reach a remote one through an SSH tunnel)")
    parser.add_argument("--port", type=_port, default=8765, help="port (default: 8765; 0: a free one, printed)")
    parser.add_argument("--token-file", metavar="FILE",
                        help="read the access token from FILE (mode 0600; default: a random token)")
    parser.add_argument("--public-url", metavar="URL",
                        help="the https://HOST[:PORT] a reverse proxy serves the UI at: its Host and Origin are "
                             "accepted, and an https address makes the cookie Secure")
    parser.add_argument("--debug", action="store_true", help="debug logs on stderr")
    add_bus_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from streamflow.cli.main import bus_options
    from streamflow.errors import ConfigError
    from streamflow.ui.auth import Auth, read_token_file
    from streamflow.ui.server import UIOptions, serve

    try:
        auth = Auth(token=read_token_file(args.token_file)) if args.token_file else Auth()
        if args.public_url:
            auth.public(args.public_url)
    except ConfigError as exc:
        print(f"streamflow: {exc}", file=sys.stderr)
        return 2

    def _announce(url: str) -> None:
        print(f"streamflow ui: {url}", flush=True)

    options = UIOptions(host=args.host, port=args.port, bus=bus_options(args), auth=auth)
    try:
        asyncio.run(serve(options, _announce))
    except OSError as exc:
        print(f"streamflow: ui: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
