"""The ``slurm`` connector: jobs submitted with ``sbatch`` and followed with ``scontrol``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from streamflow.connectors.batch import (
    JobStatus,
    long_options,
    parse_memory_mb,
    schema_flag,
    schema_integer,
    schema_string,
)
from streamflow.connectors.queue_manager import QueueManagerConnector
from streamflow.core.scheduling import Hardware
from streamflow.errors import RemoteCommandError

__all__ = ["SlurmConnector"]

_RUNNING = {
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
    "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT",
}  # fmt: skip
_FAILED = {
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
}

_STRING_OPTIONS = {
    "account": "Charge the job to this account (--account)",
    "begin": "Start the job no earlier than this time (--begin)",
    "clusters": "Clusters to submit to (--clusters)",
    "comment": "A comment attached to the job (--comment)",
    "constraint": "Node features the job needs (--constraint)",
    "cpuFreq": "CPU frequency request (--cpu-freq)",
    "deadline": "Remove the job if it cannot end before this time (--deadline)",
    "distribution": "Task distribution (--distribution)",
    "exclude": "Nodes not to run on (--exclude)",
    "export": "Environment variables propagated from the login node (--export)",
    "gpus": "GPUs for the whole job (--gpus)",
    "gpusPerNode": "GPUs per node (--gpus-per-node)",
    "gpusPerTask": "GPUs per task (--gpus-per-task)",
    "gres": "Generic resources per node (--gres)",
    "hint": "Task binding hint (--hint)",
    "licenses": "Licenses the job needs (--licenses)",
    "mailType": "Events that send mail (--mail-type)",
    "mailUser": "Who receives the mail (--mail-user)",
    "mem": "Memory per node, e.g. 4G (--mem)",
    "memPerCpu": "Memory per allocated CPU (--mem-per-cpu)",
    "memPerGpu": "Memory per allocated GPU (--mem-per-gpu)",
    "nodelist": "Nodes to run on (--nodelist)",
    "partition": "Partition to submit to (--partition)",
    "qos": "Quality of service (--qos)",
    "reservation": "Reservation to run in (--reservation)",
    "signal": "Signal sent before the time limit (--signal)",
    "time": "Time limit, e.g. 01:00:00 (--time)",
    "timeMin": "Minimum time limit (--time-min)",
    "tmp": "Minimum temporary disk space per node (--tmp)",
    "wckey": "Workload characterization key (--wckey)",
}
_INTEGER_OPTIONS = {
    "coresPerSocket": "Cores per socket (--cores-per-socket)",
    "cpusPerGpu": "CPUs per allocated GPU (--cpus-per-gpu)",
    "cpusPerTask": "CPUs per task (--cpus-per-task)",
    "minCpus": "Minimum CPUs per node (--mincpus)",
    "ntasks": "Number of tasks (--ntasks)",
    "ntasksPerCore": "Tasks per core (--ntasks-per-core)",
    "ntasksPerGpu": "Tasks per GPU (--ntasks-per-gpu)",
    "ntasksPerNode": "Tasks per node (--ntasks-per-node)",
    "ntasksPerSocket": "Tasks per socket (--ntasks-per-socket)",
    "priority": "Job priority (--priority)",
    "socketsPerNode": "Sockets per node (--sockets-per-node)",
    "threadsPerCore": "Threads per core (--threads-per-core)",
}
_FLAG_OPTIONS = {
    "contiguous": "Allocate contiguous nodes (--contiguous)",
    "exclusive": "Do not share the nodes with other jobs (--exclusive)",
    "noRequeue": "Never requeue the job (--no-requeue)",
    "overcommit": "Allow more than one task per CPU (--overcommit)",
    "oversubscribe": "Allow sharing resources with other jobs (--oversubscribe)",
    "requeue": "Allow the job to be requeued (--requeue)",
}
_SPECIAL = {"minCpus": "mincpus"}


def _escape(path: str) -> str:
    """Escape Slurm's filename patterns (``%j``...) in a literal path."""
    return path.replace("%", "%%")


class SlurmConnector(QueueManagerConnector):
    """Submits jobs to Slurm with ``sbatch`` and follows them with ``scontrol show job``.

    The queue is reached through the deployment this one ``wraps`` (e.g. an ``ssh`` deployment to
    the login node), or this machine without ``wraps``. A job (a run with a job name) becomes a
    batch script in its working directory, submitted and polled every ``pollingInterval`` seconds,
    at most ``maxConcurrentJobs`` at once; it is cancelled in the queue on timeout, on cancellation
    and on undeploy. Other commands (small probes) run directly on the login node.

    Service options become ``#SBATCH --<option>=<value>`` lines (``cpusPerTask: 2`` gives
    ``--cpus-per-task=2``; a ``true`` flag gives ``--exclusive``). The job's name, working
    directory and output files are given to ``sbatch`` on its command line, so they win over a
    template's directives. Job states and exit codes come from ``scontrol show job -o`` (no
    accounting database needed); a job the controller has already forgotten (after its
    ``MinJobAge``) is read back from the exit-code file its script wrote. Jobs are cancelled with
    ``scancel``. The batch nodes are assumed to share the login node's file
    system: copies and streams go to the login node through the wrapped connector.
    """

    directive = "#SBATCH"
    submit_program = "sbatch"
    kind = "slurm"

    @classmethod
    def service_properties(cls) -> dict[str, dict[str, Any]]:
        """Return the ``sbatch`` options a service may set."""
        properties: dict[str, dict[str, Any]] = {}
        for key, description in _STRING_OPTIONS.items():
            properties[key] = {"type": ["string", "integer"], "description": description}
        for key, description in _INTEGER_OPTIONS.items():
            properties[key] = schema_integer(description, 0 if key == "priority" else 1)
        properties["nodes"] = {
            "type": ["string", "integer"],
            "description": "Number of nodes, or min-max (--nodes)",
        }
        for key, description in _FLAG_OPTIONS.items():
            properties[key] = schema_flag(description)
        properties["extra"] = {
            "type": "array",
            "items": schema_string("One sbatch option, e.g. --switches=1"),
            "description": "Further sbatch options, each written verbatim after #SBATCH",
        }
        return dict(sorted(properties.items()))

    def service_directives(self, options: Mapping[str, Any]) -> list[str]:
        """Return ``--option=value`` for each option (flags without a value when true)."""
        return long_options(options, _FLAG_OPTIONS, _SPECIAL)

    def submit_command(
        self, script: str, job_name: str, workdir: str | None, stdout: str, stderr: str | None
    ) -> list[str]:
        """Return ``sbatch --parsable --job-name ... [--chdir ...] --output ... [--error ...] script``."""
        argv = ["sbatch", "--parsable", f"--job-name={job_name}"]
        if workdir:
            argv.append(f"--chdir={workdir}")
        argv.append(f"--output={_escape(stdout)}")
        if stderr is not None:
            argv.append(f"--error={_escape(stderr)}")
        return [*argv, script]

    def parse_job_id(self, output: str) -> str | None:
        """Return the id of ``sbatch --parsable``'s ``id[;cluster]`` line."""
        for line in reversed(output.splitlines()):
            if match := re.fullmatch(r"\s*(\d+(?:_\d+)?)(?:;\S+)?\s*", line):
                return match.group(1)
        return None

    def status_command(self, job_id: str) -> list[str]:
        """Return ``scontrol show job -o <id>``."""
        return ["scontrol", "show", "job", "-o", job_id]

    def parse_status(self, output: str, exit_code: int) -> JobStatus | None:
        """Read ``JobState=`` and ``ExitCode=code:signal`` (a signal n gives 128+n)."""
        if exit_code != 0:
            if "invalid job id" in output.lower():
                return None
            raise RemoteCommandError(f"scontrol failed (exit {exit_code}): {output}")
        state_match = re.search(r"(?:^|\s)JobState=(\S+)", output)
        if state_match is None:
            raise RemoteCommandError(f"no JobState in scontrol's answer: {output[:200]}")
        state = state_match.group(1)
        if state in _RUNNING or state not in (_FAILED | {"COMPLETED"}):
            return JobStatus(state=state, done=False)
        code_match = re.search(r"(?:^|\s)ExitCode=(\d+):(\d+)", output)
        code = 0
        if code_match is not None:
            status, signal = int(code_match.group(1)), int(code_match.group(2))
            code = 128 + signal if signal else status
        if state in _FAILED and code == 0:
            code = 1
        return JobStatus(state=state, done=True, exit_code=code)

    def cancel_command(self, job_id: str) -> list[str]:
        """Return ``scancel <id>``."""
        return ["scancel", job_id]

    def hardware(self, options: Mapping[str, Any]) -> Hardware | None:
        """Return cores (tasks times CPUs per task, times nodes for per-node tasks) and memory requested."""
        if not any(key in options for key in ("cpusPerTask", "ntasks", "ntasksPerNode", "mem", "memPerCpu")):
            return None
        nodes = int(str(options.get("nodes", 1)).split("-")[0] or 1)
        tasks = int(options.get("ntasks") or int(options.get("ntasksPerNode") or 1) * nodes)
        cores = float(tasks * int(options.get("cpusPerTask") or 1))
        memory = 0.0
        if (mem := parse_memory_mb(options["mem"]) if "mem" in options else None) is not None:
            memory = mem * nodes
        elif (
            per_cpu := parse_memory_mb(options["memPerCpu"]) if "memPerCpu" in options else None
        ) is not None:
            memory = per_cpu * cores
        return Hardware(cores=cores, memory=memory)
