"""Moving files between machines that share no filesystem, through the JetStream object store.

A worker that does not share its filesystem with the rest of the run (``--no-shared-fs``)
*publishes* the files it produced: each file goes to the object store bucket ``sf_files``
(chunked and digest-checked by JetStream) under a name derived from its absolute path,
and each directory gets a manifest of the files below it. Whoever needs a path that does
not exist on its own machine — a worker staging a job's inputs, the run delivering its
outputs — *fetches* it to the same absolute path. Paths therefore stay valid everywhere,
and the tokens in the log never have to be rewritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import nats.js.errors
import structlog
from nats.js.client import JetStreamContext

from streamflow.errors import TransferError

__all__ = ["FILES_BUCKET", "fetch_missing", "is_published", "object_name", "publish_paths"]

log = structlog.get_logger("streamflow.data")

FILES_BUCKET = "sf_files"


def object_name(path: str) -> str:
    """The object name of an absolute path (stable across machines)."""
    return hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:48]


def _entries(value: Any) -> Iterator[tuple[str, str]]:
    """``(class, path)`` for every File/Directory in a CWL value (secondary files too)."""
    if isinstance(value, dict):
        cls = value.get("class")
        if cls in ("File", "Directory"):
            path = value.get("path")
            location = value.get("location")
            if not path and isinstance(location, str) and location.startswith("file://"):
                path = unquote(urlparse(location).path)
            if isinstance(path, str) and path:
                yield str(cls), path
            for sec in value.get("secondaryFiles") or []:
                yield from _entries(sec)
            if cls == "Directory":
                for item in value.get("listing") or []:
                    yield from _entries(item)
            return
        for item in value.values():
            yield from _entries(item)
    elif isinstance(value, list):
        for item in value:
            yield from _entries(item)


async def _bucket(js: JetStreamContext) -> Any:
    try:
        return await js.object_store(FILES_BUCKET)
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
        return await js.create_object_store(FILES_BUCKET)


async def publish_paths(js: JetStreamContext, value: Any) -> int:
    """Upload every file (and directory manifest) referenced by a CWL value.

    Returns:
        How many objects were stored.

    Raises:
        TransferError: a file cannot be read or stored.
    """
    store = await _bucket(js)
    count = 0
    for cls, path in _entries(value):
        try:
            if cls == "Directory" and os.path.isdir(path):
                files = [str(p.relative_to(path)) for p in sorted(Path(path).rglob("*")) if p.is_file()]
                manifest = json.dumps({"kind": "dir", "files": files}).encode()
                await store.put(object_name(path), manifest)
                count += 1
                for rel in files:
                    data = await asyncio.to_thread(Path(path, rel).read_bytes)
                    await store.put(object_name(os.path.join(path, rel)), data)
                    count += 1
            elif os.path.isfile(path):
                data = await asyncio.to_thread(Path(path).read_bytes)
                await store.put(object_name(path), data)
                count += 1
        except OSError as exc:
            raise TransferError(f"cannot publish {path}: {exc}") from exc
    if count:
        log.debug("files_published", objects=count)
    return count


async def is_published(js: JetStreamContext, path: str) -> bool:
    """Whether ``path`` was published to the object store."""
    try:
        store = await _bucket(js)
        await store.get_info(object_name(path))
    except (nats.js.errors.ObjectNotFoundError, nats.js.errors.NotFoundError):
        return False
    return True


async def _fetch_file(store: Any, path: str) -> bool:
    """Download one object to ``path``: its chunks are written as they come into a new file
    beside it (``mkstemp``: created here, mode 0600, never an existing file or link), which
    then replaces ``path``. (``ObjectStore.get`` without ``writeinto`` joins the chunks by
    repeated concatenation: quadratic in the file's size.)"""
    target = Path(path)
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    fd, partial = await asyncio.to_thread(tempfile.mkstemp, prefix=f".{target.name}.", suffix=".part",
                                          dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            try:
                await store.get(object_name(path), writeinto=handle)
            except (nats.js.errors.ObjectNotFoundError, nats.js.errors.NotFoundError):
                return False
        await asyncio.to_thread(os.replace, partial, target)
        partial = ""
        return True
    finally:
        if partial:
            with contextlib.suppress(OSError):
                os.unlink(partial)


async def fetch_missing(js: JetStreamContext, value: Any) -> int:
    """Download every file or directory of a CWL value that does not exist here.

    Returns:
        How many paths were fetched.

    Raises:
        TransferError: a missing path is not in the object store either.
    """
    missing = [(cls, path) for cls, path in _entries(value) if not os.path.exists(path)]
    if not missing:
        return 0
    store = await _bucket(js)
    fetched = 0
    for cls, path in missing:
        if os.path.exists(path):  # fetched as part of a directory already
            continue
        if cls == "Directory":
            try:
                manifest = json.loads((await store.get(object_name(path))).data or b"{}")
            except (nats.js.errors.ObjectNotFoundError, nats.js.errors.NotFoundError):
                raise TransferError(f"{path}: not on this machine and not published by its producer") from None
            await asyncio.to_thread(Path(path).mkdir, parents=True, exist_ok=True)
            for rel in manifest.get("files", []):
                await _fetch_file(store, os.path.join(path, rel))
            fetched += 1
        elif await _fetch_file(store, path):
            fetched += 1
        else:
            raise TransferError(f"{path}: not on this machine and not published by its producer")
    log.debug("files_fetched", paths=fetched)
    return fetched
