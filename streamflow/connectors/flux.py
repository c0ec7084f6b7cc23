"""The ``flux`` connector: jobs submitted with ``flux batch`` and followed with ``flux jobs``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from streamflow.connectors.batch import JobStatus, long_options, schema_flag, schema_integer, schema_string
from streamflow.connectors.queue_manager import QueueManagerConnector
from streamflow.core.scheduling import Hardware
from streamflow.errors import RemoteCommandError

__all__ = ["FluxConnector"]

_INTEGER_OPTIONS = {
    "nslots": "Number of slots of the batch instance (--nslots; 1 when neither nslots nor nodes is set)",
    "coresPerSlot": "Cores per slot (--cores-per-slot)",
    "gpusPerSlot": "GPUs per slot (--gpus-per-slot)",
    "nodes": "Number of nodes (--nodes)",
    "urgency": "Urgency, 0 to 31 (--urgency)",
}
_STRING_OPTIONS = {
    "timeLimit": "Time limit in Flux Standard Duration, e.g. 30m or 2h (--time-limit)",
    "queue": "Queue to submit to (--queue)",
    "bank": "Bank to charge (--bank)",
    "requires": "Resource constraints (--requires)",
    "begin": "Start no earlier than this time (--begin-time)",
}
_FLAG_OPTIONS = {"exclusive": "Allocate whole nodes (--exclusive)"}
_OPTION_NAMES = {"begin": "begin-time"}


class FluxConnector(QueueManagerConnector):
    """Submits jobs to Flux with ``flux batch`` and follows them with ``flux jobs``.

    The queue is reached through the deployment this one ``wraps`` (e.g. an ``ssh`` deployment to
    the login node), or this machine without ``wraps``. A job (a run with a job name) becomes a
    batch script in its working directory, submitted and polled every ``pollingInterval`` seconds,
    at most ``maxConcurrentJobs`` at once; it is cancelled in the queue on timeout, on cancellation
    and on undeploy. Other commands (small probes) run directly on the login node.

    Service options become ``#flux:`` directive lines (``nslots: 2`` gives ``#flux: --nslots=2``);
    without ``nslots`` or ``nodes`` the job asks for one slot. The job's name and output files are
    given to ``flux batch`` on its command line; the script changes to the working directory
    itself. States come from ``flux jobs -n -o "{state} {returncode}" <id>`` (a negative return
    code, a signal, gives 128+n; a job cancelled before it started gives 1); jobs are cancelled with
    ``flux cancel``. The batch nodes are assumed to share the login node's file
    system: copies and streams go to the login node through the wrapped connector.

    Written against Flux's documented command line; Flux is not packaged where StreamFlow's tests
    run, so only the scripts and command lines this connector builds are tested, not a real Flux.
    """

    directive = "#flux:"
    submit_program = "flux"
    kind = "flux"

    @classmethod
    def service_properties(cls) -> dict[str, dict[str, Any]]:
        """Return the ``flux batch`` options a service may set."""
        properties: dict[str, dict[str, Any]] = {}
        for key, description in _INTEGER_OPTIONS.items():
            properties[key] = schema_integer(description, 0 if key == "urgency" else 1)
        for key, description in _STRING_OPTIONS.items():
            properties[key] = schema_string(description)
        for key, description in _FLAG_OPTIONS.items():
            properties[key] = schema_flag(description)
        properties["extra"] = {
            "type": "array",
            "items": schema_string("One flux batch option, e.g. --setattr=system.foo=bar"),
            "description": "Further flux batch options, each written verbatim after #flux:",
        }
        return dict(sorted(properties.items()))

    def service_directives(self, options: Mapping[str, Any]) -> list[str]:
        """Return ``--option=value`` for each option, plus ``--nslots=1`` when no size is given."""
        directives = []
        if "nslots" not in options and "nodes" not in options:
            directives.append("--nslots=1")
        return directives + long_options(options, _FLAG_OPTIONS, _OPTION_NAMES)

    def submit_command(
        self, script: str, job_name: str, workdir: str | None, stdout: str, stderr: str | None
    ) -> list[str]:
        """Return ``flux batch --job-name=... --output=... [--error=...] script``."""
        argv = ["flux", "batch", f"--job-name={job_name}", f"--output={stdout}"]
        if stderr is not None:
            argv.append(f"--error={stderr}")
        return [*argv, script]

    def parse_job_id(self, output: str) -> str | None:
        """Return the job id ``flux batch`` printed (``ƒ...`` or a number)."""
        for line in reversed(output.splitlines()):
            if re.fullmatch(r"\s*(?:(?:ƒ|f)[1-9A-HJ-NP-Za-km-z]+|\d+)\s*", line):
                return line.strip()
        return None

    def status_command(self, job_id: str) -> list[str]:
        """Return ``flux jobs -n -o "{state} {returncode}" <id>``."""
        return ["flux", "jobs", "-n", "-o", "{state} {returncode}", job_id]

    def parse_status(self, output: str, exit_code: int) -> JobStatus | None:
        """Read the state; ``INACTIVE`` ends the job with its return code."""
        words = output.split()
        if exit_code != 0 or not words:
            if "not found" in output.lower() or (exit_code == 0 and not words):
                return None
            raise RemoteCommandError(f"flux jobs failed (exit {exit_code}): {output}")
        state = words[-2] if len(words) >= 2 and words[-1].lstrip("-").isdigit() else words[-1]
        if state != "INACTIVE":
            return JobStatus(state=state, done=False)
        if not words[-1].lstrip("-").isdigit():
            return JobStatus(state=state, done=True)
        code = int(words[-1])
        if code == -128:  # cancelled before it started
            code = 1
        elif code < 0:
            code = 128 - code
        return JobStatus(state=state, done=True, exit_code=code)

    def cancel_command(self, job_id: str) -> list[str]:
        """Return ``flux cancel <id>``."""
        return ["flux", "cancel", job_id]

    def hardware(self, options: Mapping[str, Any]) -> Hardware | None:
        """Return the cores requested (slots times cores per slot)."""
        if "nslots" not in options and "coresPerSlot" not in options:
            return None
        return Hardware(cores=float(int(options.get("nslots") or 1) * int(options.get("coresPerSlot") or 1)))
