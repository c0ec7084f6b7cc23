"""What cwltool's command-line habits do in StreamFlow, beyond parsing them.

``streamflow run`` and ``streamflow-cwl-runner`` accept cwltool's usual flags
(``docs/cli.md``, ``docs/cwl.md``); the ones that need more than an option of the run are
here:

* ``--cachedir DIR``: job directories live under ``DIR`` and are kept; every run made with
  it is listed in ``DIR/streamflow-cache.json`` with a fingerprint of each of its steps
  (the process, its requirements and hints). A later run with the same ``DIR`` reuses a
  completed job of an earlier run when the step (same name, same fingerprint), the tag and
  the inputs are the same and every output file still exists: the rerun machinery
  (:func:`streamflow.cli.engine.reuse_index`), across runs instead of within a replay.
* the job directories of a completed run are removed unless ``--leave-tmpdir`` (or
  ``--leave-outputs``, or ``--cachedir``) asks to keep them; a failed or cancelled run keeps
  them for ``streamflow rerun``/``resume``;
* ``--provenance DIR`` writes the run's Workflow Run RO-Crate (as ``streamflow prov``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from streamflow.cwl.utils import plain
from streamflow.workflow.graph import ExecuteStep, WorkflowGraph

__all__ = ["CACHE_INDEX", "cache_loader", "check_document", "record_cached_run", "remove_job_dirs",
           "step_fingerprints", "write_provenance"]

CACHE_INDEX = "streamflow-cache.json"
"""The file of a ``--cachedir`` listing the runs made with it and their steps' fingerprints."""

_MAX_RUNS = 50  # earlier runs a new run looks into (newest first)


def check_document(workflow: str) -> Any:
    """Load, check and translate a document without a job (``--validate``/``--print-dot``).

    Returns:
        A :class:`streamflow.cli.engine.PreparedRun` without inputs.

    Raises:
        WorkflowDefinitionError: an invalid document.
        UnsupportedRequirementError: a requirement that is not supported.
    """
    from streamflow.cli.engine import PreparedRun
    from streamflow.cwl.loader import load_document, split_document
    from streamflow.cwl.tool import check_requirements_supported
    from streamflow.cwl.translator import root_requirements, translate

    loaded = load_document(workflow)
    requirements, _ = root_requirements(loaded.process, {})
    check_requirements_supported(loaded.process, requirements)
    local, _fragment = split_document(workflow)
    name = Path(local).stem
    graph = translate(loaded.process, cwl_version=loaded.cwl_version, name=name, job_order={})
    return PreparedRun(name=name, workflow=local, job=None, inputs={}, graph=graph,
                       digest=hashlib.sha256(Path(local).read_bytes()).hexdigest())


def _stable(value: Any) -> Any:
    """``value`` without the parser's random blank-node names (``_:<uuid>``), which change per load."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, str) and value.startswith("_:"):
        return "_:"
    return value


def step_fingerprints(graph: WorkflowGraph) -> dict[str, str]:
    """Step name -> a digest of what the step runs (its process, requirements and hints)."""
    result: dict[str, str] = {}
    for step in graph.steps.values():
        if isinstance(step, ExecuteStep):
            described = [plain(step.process), plain(step.requirements), plain(step.hints), step.cwl_version]
            text = json.dumps(_stable(described), sort_keys=True, default=str)
            result[step.name] = hashlib.sha256(text.encode()).hexdigest()
    return result


@contextlib.contextmanager
def _locked_index(cachedir: str) -> Any:
    os.makedirs(cachedir, exist_ok=True)
    path = os.path.join(cachedir, CACHE_INDEX)
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)


def _read_index(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {"runs": []}
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        return {"runs": []}
    return data


def record_cached_run(cachedir: str, run_id: str, fingerprints: dict[str, str]) -> None:
    """List ``run_id`` in ``cachedir``'s index (newest last), with its steps' fingerprints."""
    with _locked_index(cachedir) as path:
        data = _read_index(path)
        runs = [r for r in data["runs"] if isinstance(r, dict) and r.get("run_id") != run_id]
        runs.append({"run_id": run_id, "steps": fingerprints})
        data["runs"] = runs[-_MAX_RUNS:]
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(temporary, path)


def cache_loader(cachedir: str, fingerprints: dict[str, str]) -> Callable[[Any], Coroutine[Any, Any, dict[Any, Any]]]:
    """The ``RunOptions.reusable`` hook of ``--cachedir``: jobs of earlier runs to reuse.

    A job qualifies when its step has the same name and fingerprint here; among several
    earlier runs the newest wins. Runs no longer in the event log are skipped.
    """

    async def load(log_: Any) -> dict[Any, Any]:
        from streamflow.cli.engine import reuse_index
        from streamflow.errors import RunNotFoundError

        with _locked_index(cachedir) as path:
            runs = _read_index(path)["runs"]
        reusable: dict[Any, Any] = {}
        for entry in reversed(runs):  # newest first: setdefault keeps it
            if not isinstance(entry, dict) or not isinstance(entry.get("steps"), dict):
                continue
            same = {name for name, digest in entry["steps"].items() if fingerprints.get(name) == digest}
            if not same:
                continue
            try:
                index = await reuse_index(log_, str(entry.get("run_id")))
            except RunNotFoundError:
                continue
            for key, job in index.items():
                if key[0] in same:
                    reusable.setdefault(key, job)
        return reusable

    return load


def remove_job_dirs(workdir: str, run_id: str) -> None:
    """Remove the job directories of ``run_id`` under the base ``workdir`` (best effort).

    The jobs' directories are removed by a few threads at once: a large scatter leaves
    thousands of them, and removing them one after the other waits on the file system
    (about a millisecond per job on a loaded machine) at the very end of the run.
    """
    from concurrent.futures import ThreadPoolExecutor

    from streamflow.data.jobdirs import UnsafeDirectoryError, private_base

    try:
        base = private_base(workdir)
    except (UnsafeDirectoryError, OSError):
        return
    target = base / run_id
    if not target.is_dir() or target.is_symlink():
        return
    try:
        with os.scandir(target) as entries:
            jobs = [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
    except OSError:
        jobs = []
    if len(jobs) > 16:
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="sf-rmtree") as pool:
            for _ in pool.map(lambda path: shutil.rmtree(path, ignore_errors=True), jobs):
                pass
    shutil.rmtree(target, ignore_errors=True)  # what is left: links, files, the run's directory


def write_provenance(args: Any, run_id: str, directory: str) -> str:
    """Write the run's Workflow Run RO-Crate into ``directory`` (a ``.zip`` path: a zip file)."""
    import asyncio

    from streamflow.cli.commands.prov import build_crate
    from streamflow.cli.commands.report import read_run

    records = asyncio.run(read_run(args, run_id))
    crate = build_crate(run_id, records)
    if directory.endswith(".zip"):
        Path(directory).parent.mkdir(parents=True, exist_ok=True)
        crate.write_zip(directory)
    else:
        crate.write(directory)
    return directory
