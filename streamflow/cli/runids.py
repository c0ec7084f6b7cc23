"""Run ids given on the command line: checked before they become NATS subjects.

A run id is one subject token (``sf.ev.<run>.>``): 1 to 128 letters, digits, ``_`` or
``-``. Anything else (``>``, ``*``, a dot, a space) would address other runs' subjects or
none, so every command refuses it up front with exit code 2 (an argparse error).
"""

from __future__ import annotations

import argparse

__all__ = ["run_id_arg"]


def run_id_arg(value: str) -> str:
    """The argparse ``type`` of a RUN_ID argument.

    Raises:
        argparse.ArgumentTypeError: ``value`` is not a valid run id.
    """
    from events.log import valid_id

    if not valid_id(value):
        raise argparse.ArgumentTypeError(
            f"invalid run id {value[:140]!r}: expected 1 to 128 letters, digits, '_' or '-'")
    return value
