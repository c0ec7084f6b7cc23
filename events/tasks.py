"""Work items of the ``SF_TASKS`` work-queue stream: one per job attempt.

Subject: ``sf.task.<deployment>.<run>``; message id ``<run>.<job>.<attempt>`` so a task
published twice for the same attempt is stored once.
"""

from __future__ import annotations

from typing import Any

import msgspec

from events.codec import enc_hook

__all__ = ["JobTask", "decode_task", "encode_task", "task_subject"]


class JobTask(msgspec.Struct, frozen=True, kw_only=True):
    """Run one attempt of a job.

    Attributes:
        run_id: the run.
        job: the job id.
        step: the execute step id.
        tag: the job's tag.
        attempt: the attempt number.
        inputs: the input object, with paths valid on ``location``.
        deployment: the deployment.
        location: the location chosen by the Scheduler.
        cores: cores reserved.
        memory: memory reserved, MiB.
        generation: how many times the run had been resumed when the task was queued;
            workers drop tasks of an older generation (a resume queues them again).
        restore: for a rollback, the outputs of the completed attempt: the new attempt
            copies what it produces to those paths.
        paths: path on the submitting machine -> path on ``location``, for each input the
            DataManager placed there (empty where the filesystem is shared).
        hostnames: host names of every location of a co-allocated job (``STREAMFLOW_HOSTS``).
    """

    run_id: str
    job: str
    step: str
    tag: str
    attempt: int
    inputs: dict[str, Any]
    deployment: str
    location: str
    cores: float = 1.0
    memory: float = 0.0
    generation: int = 0
    restore: dict[str, Any] | None = None
    paths: dict[str, str] = {}
    hostnames: list[str] = []


_encoder = msgspec.msgpack.Encoder(enc_hook=enc_hook)
_decoder = msgspec.msgpack.Decoder(JobTask)


def task_subject(deployment: str, run_id: str) -> str:
    """The work-queue subject of a deployment's tasks for a run."""
    return f"sf.task.{deployment}.{run_id}"


def encode_task(task: JobTask) -> bytes:
    """Encode a task."""
    return _encoder.encode(task)


def decode_task(data: bytes) -> JobTask:
    """Decode a task."""
    return _decoder.decode(data)
