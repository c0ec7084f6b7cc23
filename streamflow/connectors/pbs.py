"""The ``pbs`` connector: jobs submitted with ``qsub`` and followed with ``qstat -f``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from streamflow.connectors.batch import JobStatus, parse_memory_mb, schema_string
from streamflow.connectors.queue_manager import QueueManagerConnector
from streamflow.core.scheduling import Hardware

__all__ = ["PBSConnector"]

_DONE = {"C", "F", "X"}

_OPTIONS = {
    "account": ("-A", "Account to charge (-A)"),
    "begin": ("-a", "Start the job no earlier than this date and time, [[[[CC]YY]MM]DD]hhmm[.SS] (-a)"),
    "checkpoint": ("-c", "Checkpoint options (-c)"),
    "destination": ("-q", "Queue (destination) to submit to, e.g. workq or workq@server (-q)"),
    "mailOptions": ("-m", "Events that send mail: a, b, e or n (-m)"),
    "mailUser": ("-M", "Who receives the mail (-M)"),
    "priority": ("-p", "Job priority, -1024 to 1023 (-p)"),
    "rerunnable": ("-r", "Whether the job may be rerun: y or n (-r)"),
    "shell": ("-S", "Shell interpreting the script (-S)"),
}


class PBSConnector(QueueManagerConnector):
    """Submits jobs to PBS (PBS Pro, OpenPBS, Torque) with ``qsub`` and follows them with ``qstat -f``.

    The queue is reached through the deployment this one ``wraps`` (e.g. an ``ssh`` deployment to
    the login node), or this machine without ``wraps``. A job (a run with a job name) becomes a
    batch script in its working directory, submitted and polled every ``pollingInterval`` seconds,
    at most ``maxConcurrentJobs`` at once; it is cancelled in the queue on timeout, on cancellation
    and on undeploy. Other commands (small probes) run directly on the login node.

    Service options become ``#PBS`` lines: ``destination: workq`` gives ``#PBS -q workq``,
    ``resources: {nodes: 1, walltime: "00:10:00"}`` gives ``#PBS -l nodes=1,walltime=00:10:00``,
    ``additionalAttributes: {depend: ...}`` gives ``#PBS -W depend=...``. The job's name and output
    files are given to ``qsub`` on its command line (``-N``, ``-o``, ``-e`` or ``-j oe``); the script
    changes to the working directory itself. A job has ended when ``qstat -f`` shows
    ``job_state`` ``C``, ``F`` or ``X`` or no longer knows it; its exit code is ``exit_status``
    when ``qstat`` shows one, else the one the script wrote next to itself. Jobs are cancelled with
    ``qdel``. The batch nodes are assumed to share the login node's file
    system: copies and streams go to the login node through the wrapped connector.

    Tested against the ``qsub``/``qstat``/``qdel`` wrappers of Debian's ``slurm-wlm-torque`` (over
    Slurm), not against a real PBS server.
    """

    directive = "#PBS"
    submit_program = "qsub"
    kind = "pbs"

    @classmethod
    def service_properties(cls) -> dict[str, dict[str, Any]]:
        """Return the ``qsub`` options a service may set."""
        properties: dict[str, dict[str, Any]] = {
            key: {"type": ["string", "integer"], "description": description}
            for key, (_, description) in _OPTIONS.items()
        }
        properties["resources"] = {
            "type": "object",
            "description": "Resources requested with -l, e.g. {nodes: 1, ncpus: 2, mem: 4gb, walltime: 01:00:00}",
            "additionalProperties": {"type": ["string", "integer"], "description": "A resource's amount"},
        }
        properties["additionalAttributes"] = {
            "type": "object",
            "description": "Further attributes set with -W, e.g. {group_list: mygroup}",
            "additionalProperties": {"type": ["string", "integer"], "description": "An attribute's value"},
        }
        properties["extra"] = {
            "type": "array",
            "items": schema_string("One qsub option, e.g. -V"),
            "description": "Further qsub options, each written verbatim after #PBS",
        }
        return dict(sorted(properties.items()))

    def service_directives(self, options: Mapping[str, Any]) -> list[str]:
        """Return the ``#PBS`` arguments of a service's options."""
        directives = []
        for key, value in options.items():
            if key in _OPTIONS:
                directives.append(f"{_OPTIONS[key][0]} {_word(key, value)}")
            elif key in ("resources", "additionalAttributes"):
                if not isinstance(value, Mapping):
                    raise ValueError(f"{key} must be a mapping")
                flag = "-l" if key == "resources" else "-W"
                if value:
                    pairs = ",".join(f"{name}={_word(f'{key}.{name}', item)}" for name, item in value.items())
                    directives.append(f"{flag} {pairs}")
            elif key == "extra":
                for item in value:
                    if not str(item).startswith("-"):
                        raise ValueError(f"extra option {item!r} does not start with '-'")
                    directives.append(str(item))
        return directives

    def job_name(self, name: str) -> str:
        """Return ``name`` as PBS accepts it: at most 15 characters, starting with a letter."""
        cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        if not cleaned[:1].isalpha():
            cleaned = "sf" + cleaned
        return cleaned[:15]

    def submit_command(
        self, script: str, job_name: str, workdir: str | None, stdout: str, stderr: str | None
    ) -> list[str]:
        """Return ``qsub -N name -o out (-e err | -j oe) script`` (run in ``workdir``)."""
        argv = ["qsub", "-N", job_name, "-o", stdout]
        argv += ["-e", stderr] if stderr is not None else ["-j", "oe"]
        return [*argv, script]

    def parse_job_id(self, output: str) -> str | None:
        """Return the last non-empty line of ``qsub``'s answer (``1234`` or ``1234.server``)."""
        for line in reversed(output.splitlines()):
            if re.fullmatch(r"\s*\d+(?:\[\d*\])?(?:\.[\w.-]+)?\s*", line):
                return line.strip()
        return None

    def status_command(self, job_id: str) -> list[str]:
        """Return ``qstat -f <id>``."""
        return ["qstat", "-f", job_id]

    def parse_status(self, output: str, exit_code: int) -> JobStatus | None:
        """Read ``job_state`` and ``exit_status``; an unknown (finished and purged) job gives ``None``."""
        state_match = re.search(r"^\s*job_state\s*=\s*(\S+)", output, re.MULTILINE)
        if exit_code != 0 or state_match is None:
            return None
        state = state_match.group(1)
        if state not in _DONE:
            return JobStatus(state=state, done=False)
        code_match = re.search(r"^\s*[Ee]xit_status\s*=\s*(-?\d+)", output, re.MULTILINE)
        if code_match is None:
            return JobStatus(state=state, done=True)
        code = int(code_match.group(1))
        if code > 256:  # PBS Pro: killed by signal code - 256
            code = 128 + code - 256
        elif code < 0:  # PBS internal failure (the job could not start)
            code = 1
        return JobStatus(state=state, done=True, exit_code=code)

    def cancel_command(self, job_id: str) -> list[str]:
        """Return ``qdel <id>``."""
        return ["qdel", job_id]

    def hardware(self, options: Mapping[str, Any]) -> Hardware | None:
        """Return the cores (``ncpus``, or ``nodes=N:ppn=M``) and memory (``mem``) of ``resources``."""
        resources = options.get("resources") or {}
        cores = 0.0
        if "ncpus" in resources:
            cores = float(resources["ncpus"])
        elif "nodes" in resources:
            match = re.fullmatch(r"(\d+)(?::ppn=(\d+))?.*", str(resources["nodes"]))
            if match:
                cores = float(int(match.group(1)) * int(match.group(2) or 1))
        memory = parse_memory_mb(resources["mem"]) if "mem" in resources else None
        if not cores and memory is None:
            return None
        return Hardware(cores=cores, memory=memory or 0.0)


def _word(key: str, value: Any) -> str:
    text = str(value)
    if re.search(r"\s", text):
        raise ValueError(f"{key}: {text!r} contains white space")
    return text
