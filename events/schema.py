"""The event catalogue: every fact StreamFlow records, as msgspec structs.

Every event is a frozen, keyword-only struct with an explicit, stable ``tag`` (its wire
name) inheriting ``tag_field="type"`` from :class:`Event`. Rules for evolving it (see
``docs/events.md``): add fields only, always with defaults; never change a field's type
or reuse a tag; a breaking change gets a new tag and an upcaster in :mod:`events.codec`.

Events are grouped by the *aggregate* whose subject they are written on; each aggregate
has exactly one writer (the actor named in each section):

========== ================================== =============================================
aggregate  subject                            writer
========== ================================== =============================================
run        ``sf.ev.<run>.wf``                 the run supervisor (``streamflow run``)
step       ``sf.ev.<run>.step.<step>``        the Step actor
port       ``sf.ev.<run>.port.<port>``        the Port actor
alloc      ``sf.ev.<run>.alloc.<job>``        the Scheduler
job        ``sf.ev.<run>.job.<job>``          the executor worker running the attempt
data       ``sf.ev.<run>.data.<job>``         the DataManager
deploy     ``sf.ev.<run>.deploy.<dep>``       the deployment actor (beside the DataManager)
recovery   ``sf.ev.<run>.recovery.<job>``     the FailureManager
ckpt       ``sf.ev.<run>.ckpt.<group>``       the CheckpointManager of the group's host
fence      ``sf.ev.<run>.fence.<group>``      the process that took the group's lease
========== ================================== =============================================

Every writer but the executor workers holds a lease (``sf_leases``) on its actor group
(the run supervisor's group, ``supervisor``, also writes ``wf``); its appends are fenced
against the group's fence subject, so a stale holder cannot write once another took over.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "AGGREGATES",
    "SCHEMA_VERSION",
    "CheckpointTaken",
    "DataLocationsRegistered",
    "DataTransferred",
    "DeploymentDeployed",
    "DeploymentFailed",
    "DeploymentUndeployed",
    "Envelope",
    "Event",
    "EventBody",
    "InputsLost",
    "InputsStaged",
    "JobAbandoned",
    "JobCompleted",
    "JobFailed",
    "JobRequested",
    "JobRetryScheduled",
    "JobReused",
    "JobRollback",
    "JobScheduled",
    "JobStarted",
    "LeaseTaken",
    "LocationInfo",
    "PortTerminated",
    "RegisteredFile",
    "RetryPolicy",
    "RunCancelled",
    "RunCompleted",
    "RunFailed",
    "RunResumed",
    "RunStarted",
    "RunSubmitted",
    "StagingFailed",
    "StepBinding",
    "StepFailed",
    "StepTerminated",
    "TokenEmitted",
]

SCHEMA_VERSION = 1


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event payload."""


# --- run: sf.ev.<run>.wf -------------------------------------------------------------


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """The failure manager's retry policy, as the run was submitted with it.

    Attributes:
        max_retries: retries of a failed job.
        retry_delay: seconds before the first retry.
        backoff: factor applied to the delay at each further retry.
        max_delay: the longest delay, in seconds.
    """

    max_retries: int = 0
    retry_delay: float = 0.0
    backoff: float = 2.0
    max_delay: float = 300.0


class StepBinding(msgspec.Struct, frozen=True, kw_only=True):
    """Where ``streamflow.yml`` bound an execute step, as resolved at submission.

    Attributes:
        targets: the deployments it may run on (subject-safe names), the first preferred.
        service: the service of the first target, if any.
        locations: how many locations a job of the step takes.
        container: the container translator chosen for it (``docker`` entries), if any.
        filters: the binding filters ordering its targets for each job (``bindingFilters`` names).
    """

    targets: list[str]
    service: str | None = None
    locations: int = 1
    container: str | None = None
    filters: list[str] = []


class RunSubmitted(Event, frozen=True, kw_only=True, tag="RunSubmitted"):
    """A run was submitted: what to run and how the names map to subject ids.

    Attributes:
        name: the workflow's name.
        workflow: absolute path or URI of the workflow document.
        job: absolute path of the job (inputs) document, if any.
        inputs: the validated root inputs.
        outdir: where the outputs are delivered.
        workdir: the base directory of job working directories.
        engine_version: the StreamFlow version that submitted the run.
        steps: step id -> step name.
        ports: port id -> port name.
        config: path of the ``streamflow.yml`` used, if any.
        rerun_of: the run this one replays (``streamflow rerun``), if any.
        document_digest: sha256 of the workflow document, to detect edits on resume.
        retry: the retry policy (``--max-retries`` or ``failureManager``); a resumed run
            keeps it.
        config_digest: sha256 of the ``streamflow.yml``, to detect edits on resume.
        bindings: execute step id -> where ``streamflow.yml`` bound it (resume and agents
            use these, not the file as it is now).
        deployments: deployment (subject-safe name) -> its settings as submitted, with every
            secret (passwords, passphrases, tokens) left out: a resume reads the secrets
            from the file again.
        policy: the scheduling policy's name (``""``: the default).
        policy_config: the scheduling policy's config.
        binding_filters: binding filter name -> ``{"type": ..., "config": ...}``.
    """

    name: str
    workflow: str
    job: str | None = None
    inputs: dict[str, Any] = {}
    outdir: str = ""
    workdir: str = ""
    engine_version: str = ""
    steps: dict[str, str] = {}
    ports: dict[str, str] = {}
    config: str | None = None
    rerun_of: str | None = None
    document_digest: str = ""
    retry: RetryPolicy | None = None
    config_digest: str = ""
    bindings: dict[str, StepBinding] = {}
    deployments: dict[str, dict[str, Any]] = {}
    policy: str = ""
    policy_config: dict[str, Any] = {}
    binding_filters: dict[str, dict[str, Any]] = {}


class RunStarted(Event, frozen=True, kw_only=True, tag="RunStarted"):
    """The run's actors are up and executing.

    Attributes:
        host: the host that started it.
        pid: its process id.
    """

    host: str = ""
    pid: int = 0


class RunResumed(Event, frozen=True, kw_only=True, tag="RunResumed"):
    """A run was resumed by ``streamflow resume`` after its processes died.

    Attributes:
        host: the host that resumed it.
        pid: its process id.
        attempt: how many times it has been resumed.
    """

    host: str = ""
    pid: int = 0
    attempt: int = 1


class RunCompleted(Event, frozen=True, kw_only=True, tag="RunCompleted"):
    """The run finished successfully.

    Attributes:
        outputs: the output object, with files delivered to ``outdir``.
    """

    outputs: dict[str, Any] = {}


class RunFailed(Event, frozen=True, kw_only=True, tag="RunFailed"):
    """The run failed.

    Attributes:
        error: what failed.
        step: the step that failed first, if any.
    """

    error: str
    step: str | None = None
    error_type: str = ""


class RunCancelled(Event, frozen=True, kw_only=True, tag="RunCancelled"):
    """The run was cancelled (``streamflow cancel`` or Ctrl-C); it stays resumable.

    Attributes:
        reason: why.
    """

    reason: str = ""


# --- step: sf.ev.<run>.step.<step> -------------------------------------------------


class JobRequested(Event, frozen=True, kw_only=True, tag="JobRequested"):
    """An execute step has a full set of inputs for a tag and asks for a job.

    Attributes:
        job: the job id (``<step>-<tag with _>``), also its subject token.
        step: the step id.
        tag: the tag.
        inputs: the input object of the job.
        target: the deployment the step is bound to.
        cores: cores requested.
        memory: memory requested, in MiB.
        targets: every deployment the step is bound to, in order of preference (``target``
            first); empty means ``[target]``.
        service: the service of the deployment the step is bound to, if any.
        locations: how many locations the job needs at once (co-allocation).
        filters: the binding filters that order ``targets`` for this job.
    """

    job: str
    step: str
    tag: str
    inputs: dict[str, Any] = {}
    target: str = "__LOCAL__"
    cores: float = 1.0
    memory: float = 0.0
    targets: list[str] = []
    service: str | None = None
    locations: int = 1
    filters: list[str] = []


class JobReused(Event, frozen=True, kw_only=True, tag="JobReused"):
    """A rerun reuses the result of a job completed by an earlier run (no execution).

    Attributes:
        job: the job id in this run.
        tag: the tag.
        from_run: the run whose result is reused.
        from_job: the job id in that run.
        outputs: the reused output object.
        inputs: the input object (equal to the reused job's).
    """

    job: str
    tag: str
    from_run: str
    from_job: str
    outputs: dict[str, Any] = {}
    inputs: dict[str, Any] = {}


class StepFailed(Event, frozen=True, kw_only=True, tag="StepFailed"):
    """A step failed; the run fails with it.

    Attributes:
        error: what failed.
        tag: the tag being processed, if any.
        job: the job that failed, if any.
    """

    error: str
    tag: str | None = None
    job: str | None = None
    error_type: str = ""


class StepTerminated(Event, frozen=True, kw_only=True, tag="StepTerminated"):
    """A step will produce nothing more.

    Attributes:
        status: the final status name (COMPLETED, SKIPPED, FAILED, CANCELLED).
        fired: how many tags it processed.
    """

    status: str = "COMPLETED"
    fired: int = 0


# --- port: sf.ev.<run>.port.<port> -------------------------------------------------


class TokenEmitted(Event, frozen=True, kw_only=True, tag="TokenEmitted"):
    """A token was appended to a port.

    Attributes:
        tag: the token's tag.
        value: the token's value (a CWL value: JSON-like, files as File objects).
        producer: the step that produced it.
        job: the job whose output it is, if any.
        inputs: event ids of the tokens it was computed from (provenance).
        gen: the recovery generation (0 unless rolled back).
    """

    tag: str
    value: Any = None
    producer: str = ""
    job: str | None = None
    inputs: list[str] = []
    gen: int = 0


class PortTerminated(Event, frozen=True, kw_only=True, tag="PortTerminated"):
    """All producers of a port have terminated.

    Attributes:
        status: the final status name.
        tokens: how many tokens the port holds.
    """

    status: str = "COMPLETED"
    tokens: int = 0


# --- alloc: sf.ev.<run>.alloc.<job> -------------------------------------------------


class JobScheduled(Event, frozen=True, kw_only=True, tag="JobScheduled"):
    """The Scheduler chose where a job runs.

    Attributes:
        job: the job id.
        deployment: the deployment.
        location: the location within the deployment.
        cores: cores reserved.
        memory: memory reserved, MiB.
        locations: every location of a co-allocated job (``locations: N`` in a binding),
            ``location`` first; empty for a job on one location.
        hostnames: the host names of ``locations`` (``STREAMFLOW_HOSTS`` in the job's
            environment), when known.
    """

    job: str
    deployment: str
    location: str
    cores: float = 1.0
    memory: float = 0.0
    locations: list[str] = []
    hostnames: list[str] = []


# --- data: sf.ev.<run>.data.<job> ---------------------------------------------------


class InputsStaged(Event, frozen=True, kw_only=True, tag="InputsStaged"):
    """The DataManager made a job's input data available on its location.

    Attributes:
        job: the job id.
        location: where.
        transferred: how many paths had to be copied.
        inputs: the job's input object rewritten for the location (paths there).
        deployment: the deployment of ``location`` (empty in logs written before it existed).
        bytes: how many bytes were copied for this job (0 when everything was already there).
        paths: path on this machine -> path on the location, for every input that lives at
            another path there (empty on a location that shares this machine's filesystem).
    """

    job: str
    location: str
    transferred: int = 0
    inputs: dict[str, Any] | None = None
    deployment: str = ""
    bytes: int = 0
    paths: dict[str, str] = {}


class DataTransferred(Event, frozen=True, kw_only=True, tag="DataTransferred"):
    """The DataManager copied a file or directory to a location (through the connectors).

    Attributes:
        job: the job the copy was made for.
        path: the path of the data on this machine (its identity in the registry).
        deployment: the destination deployment.
        location: the destination location.
        dst_path: where the copy is on the destination.
        src_deployment: the deployment the copy was read from.
        src_location: the location the copy was read from.
        src_path: the path it was read from.
        kind: ``File`` or ``Directory``.
        bytes: bytes copied.
        checksum: ``sha1$...`` of a file, checked on the destination after the copy.
        seconds: how long the copy took.
    """

    job: str
    path: str
    deployment: str
    location: str
    dst_path: str
    src_deployment: str = "__LOCAL__"
    src_location: str = "localhost"
    src_path: str = ""
    kind: str = "File"
    bytes: int = 0
    checksum: str | None = None
    seconds: float = 0.0


class InputsLost(Event, frozen=True, kw_only=True, tag="InputsLost"):
    """Input data of a job has vanished from every location (e.g. an intermediate file was deleted).

    Attributes:
        job: the job that needs the data.
        paths: the missing paths.
        attempt: how many times the loss was detected for this job (1-based).
    """

    job: str
    paths: list[str] = []
    attempt: int = 1


class StagingFailed(Event, frozen=True, kw_only=True, tag="StagingFailed"):
    """The DataManager could not make a job's inputs available on its location (after retries).

    The run fails with this error: the job cannot run there.

    Attributes:
        job: the job id.
        deployment: the deployment of the location.
        location: the location.
        error: what failed.
        attempts: how many times staging was tried.
    """

    job: str
    deployment: str = ""
    location: str = ""
    error: str = ""
    attempts: int = 1


class RegisteredFile(msgspec.Struct, frozen=True, kw_only=True):
    """One path registered by :class:`DataLocationsRegistered`.

    Attributes:
        path: absolute path on the location.
        kind: ``File`` or ``Directory``.
        size: size in bytes (files).
        checksum: ``sha1$...`` (files), if known.
    """

    path: str
    kind: str = "File"
    size: int = 0
    checksum: str | None = None


class DataLocationsRegistered(Event, frozen=True, kw_only=True, tag="DataLocationsRegistered"):
    """The DataManager registered the data a job produced (PRIMARY copies).

    Attributes:
        job: the job id.
        deployment: the deployment.
        location: the location.
        files: the registered paths (paths on this machine, where every output is mirrored).
        location_paths: path prefix on this machine -> the same data's path on ``location``
            (a job that ran on a location that does not share this filesystem).
    """

    job: str
    deployment: str
    location: str
    files: list[RegisteredFile] = []
    location_paths: dict[str, str] = {}


# --- deploy: sf.ev.<run>.deploy.<deployment> ----------------------------------------


class LocationInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A location a deployment offers, as its connector reported it.

    Attributes:
        name: the location name.
        hostname: its host name or address, if meaningful.
        service: the service it belongs to, if any.
        local: whether it shares this machine's filesystem.
        cores: cores (0: unknown).
        memory: memory, MiB (0: unknown).
        storage: free space, MiB, by mount point.
        slots: how many jobs may run there at once (0: as many as its cores allow).
        workdir: the base working directory of jobs there.
    """

    name: str
    hostname: str | None = None
    service: str | None = None
    local: bool = False
    cores: float = 0.0
    memory: float = 0.0
    storage: dict[str, float] = {}
    slots: int = 0
    workdir: str = ""


class DeploymentDeployed(Event, frozen=True, kw_only=True, tag="DeploymentDeployed"):
    """A deployment was brought up (or, when external, connected to) for the run.

    Attributes:
        deployment: the deployment (subject-safe name).
        connector: its connector type (``ssh``, ``slurm``...).
        external: whether it is managed by someone else (never created nor destroyed).
        locations: the locations it offers.
        host: the process that deployed it (``host/pid``).
        generation: the run's resume count when it was deployed.
    """

    deployment: str
    connector: str
    external: bool = False
    locations: list[LocationInfo] = []
    host: str = ""
    generation: int = 0


class DeploymentFailed(Event, frozen=True, kw_only=True, tag="DeploymentFailed"):
    """A deployment could not be brought up: the jobs bound to it cannot run.

    Attributes:
        deployment: the deployment.
        error: why.
        generation: the run's resume count.
    """

    deployment: str
    error: str = ""
    generation: int = 0


class DeploymentUndeployed(Event, frozen=True, kw_only=True, tag="DeploymentUndeployed"):
    """A deployment was torn down (or disconnected from, when external) at the end of the run.

    Attributes:
        deployment: the deployment.
        generation: the run's resume count.
        error: why tearing it down failed, if it did.
    """

    deployment: str
    generation: int = 0
    error: str = ""


# --- job: sf.ev.<run>.job.<job> -----------------------------------------------------


class JobStarted(Event, frozen=True, kw_only=True, tag="JobStarted"):
    """A worker started an attempt of a job.

    Attributes:
        job: the job id.
        attempt: the attempt number (1-based; retries increase it).
        delivery: the work-queue delivery count (a redelivery after a crash increases it).
        worker: the worker's id (``host/pid/n``).
        workdir: the attempt's own working directory.
    """

    job: str
    attempt: int = 1
    delivery: int = 1
    worker: str = ""
    workdir: str = ""


class JobCompleted(Event, frozen=True, kw_only=True, tag="JobCompleted"):
    """An attempt finished successfully; its outputs are the job's outputs.

    Attributes:
        job: the job id.
        attempt: the attempt.
        delivery: the delivery that ran it.
        outputs: the output object.
        exit_code: the command's exit code (0 for expression tools).
        duration: seconds spent running.
        location_paths: path prefix on this machine -> the same data's path on the job's
            location, when the job ran where this filesystem is not shared (its output
            directory there; the outputs were copied back to the prefix here).
        command: the command line as run (argument list, paths as on this machine; secret inputs as their
            placeholders; long ones shortened), empty for an expression tool.
    """

    job: str
    attempt: int = 1
    delivery: int = 1
    outputs: dict[str, Any] = {}
    exit_code: int = 0
    duration: float = 0.0
    location_paths: dict[str, str] = {}
    command: list[str] = []


class JobFailed(Event, frozen=True, kw_only=True, tag="JobFailed"):
    """An attempt failed.

    Attributes:
        job: the job id.
        attempt: the attempt.
        delivery: the delivery that ran it.
        error: what failed.
        exit_code: the command's exit code, if it ran.
        retryable: whether another attempt may succeed.
        duration: seconds spent running.
        error_type: the class of the error.
        command: the command line, if it ran (as in ``JobCompleted``).
    """

    job: str
    attempt: int = 1
    delivery: int = 1
    error: str = ""
    exit_code: int | None = None
    retryable: bool = True
    duration: float = 0.0
    error_type: str = ""
    command: list[str] = []


# --- recovery: sf.ev.<run>.recovery.<job> ------------------------------------------


class JobRetryScheduled(Event, frozen=True, kw_only=True, tag="JobRetryScheduled"):
    """The FailureManager decided to retry a failed job.

    Attributes:
        job: the job id.
        attempt: the attempt that will run next.
        delay: seconds to wait before it.
        reason: the failure being retried.
    """

    job: str
    attempt: int
    delay: float = 0.0
    reason: str = ""


class JobRollback(Event, frozen=True, kw_only=True, tag="JobRollback"):
    """The FailureManager re-runs a completed job because data it produced was lost.

    The new attempt restores its outputs at the paths recorded by the completed one, so
    the tokens already emitted stay valid and only the jobs waiting for the data wait.

    Attributes:
        job: the producer job to run again.
        attempt: the attempt that will run.
        for_job: the job that needs the lost data.
        paths: the lost paths.
    """

    job: str
    attempt: int
    for_job: str = ""
    paths: list[str] = []


class JobAbandoned(Event, frozen=True, kw_only=True, tag="JobAbandoned"):
    """The FailureManager gave up on a job: its step fails.

    Attributes:
        job: the job id.
        attempts: how many attempts ran.
        reason: the last failure.
    """

    job: str
    attempts: int
    reason: str = ""
    error_type: str = ""


# --- ckpt: sf.ev.<run>.ckpt.<group> ---------------------------------------------------------


class CheckpointTaken(Event, frozen=True, kw_only=True, tag="CheckpointTaken"):
    """A snapshot of the run's state was stored.

    Attributes:
        last_seq: the last stream sequence the snapshot covers.
        key: where the snapshot is stored (KV key).
        events: how many events it folds.
    """

    last_seq: int
    key: str
    events: int = 0


# --- fence: sf.ev.<run>.fence.<group> ------------------------------------------------


class LeaseTaken(Event, frozen=True, kw_only=True, tag="LeaseTaken"):
    """A process took the lease of an actor group: the group's writers' fence.

    Every later append of the group's actors is checked by the server against the last
    event of this subject; a newer ``LeaseTaken`` makes the previous holder's appends fail.

    Attributes:
        group: the actor group (``steps``, ``supervisor``...).
        epoch: the lease's KV revision when taken.
        host: the holder's host name.
        pid: the holder's process id.
    """

    group: str
    epoch: int
    host: str = ""
    pid: int = 0


EventBody = (
    RunSubmitted
    | RunStarted
    | RunResumed
    | RunCompleted
    | RunFailed
    | RunCancelled
    | JobRequested
    | JobReused
    | StepFailed
    | StepTerminated
    | TokenEmitted
    | PortTerminated
    | JobScheduled
    | InputsStaged
    | InputsLost
    | StagingFailed
    | DataLocationsRegistered
    | DataTransferred
    | DeploymentDeployed
    | DeploymentFailed
    | DeploymentUndeployed
    | JobStarted
    | JobCompleted
    | JobFailed
    | JobRetryScheduled
    | JobRollback
    | JobAbandoned
    | CheckpointTaken
    | LeaseTaken
)

AGGREGATES = ("wf", "step", "port", "alloc", "job", "data", "deploy", "recovery", "ckpt", "fence")


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """What is stored for every event.

    Attributes:
        event_id: deterministic id (also the ``Nats-Msg-Id``).
        run_id: the run.
        producer: the actor that wrote it (``step:s3``, ``scheduler``, ``worker:host/pid/1``).
        causation_id: the event that caused this one, if any.
        epoch: the writer's fencing epoch (its lease revision; 0 when unleased).
        occurred_at: writer's wall clock, ns since the epoch (informational; order comes
            from the stream sequence).
        schema: the envelope schema version.
        body: the event.
    """

    event_id: str
    run_id: str
    producer: str
    body: EventBody
    causation_id: str | None = None
    epoch: int = 0
    occurred_at: int = 0
    schema: int = SCHEMA_VERSION
