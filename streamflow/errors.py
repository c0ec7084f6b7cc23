"""The StreamFlow exception hierarchy.

This module has no dependencies so that every layer (``events``, ``streamflow.core``,
``actors``) can import it without import cycles. Branches are organised by *who has to
react* to the error::

    StreamFlowError
    ├── WorkflowDefinitionError        user input; never retried (exit code 2)
    │   ├── InputValidationError       a job/input object does not match the process
    │   └── ConfigError                streamflow.yml does not match its schema
    ├── UnsupportedRequirementError    a CWL feature this runner does not support (exit 33)
    ├── WorkflowExecutionError         a job or the run failed while executing (exit 1)
    │   ├── JobFailedError             a command exited with a failure code
    │   └── FailureHandlingError       the failure manager gave up
    ├── ConnectorError                 a deployment / connector problem
    │   ├── DeploymentError
    │   ├── RemoteCommandError
    │   └── TransferError
    ├── BusError                       the NATS bus cannot be reached or misbehaves
    │   └── LeaseError                 an actor lease is held by another owner
    ├── EventLogError                  the event log cannot be read or written
    │   ├── EventDecodeError           a stored event cannot be decoded
    │   └── ConcurrencyError           an optimistic-concurrency check failed
    │       └── FencedError            a leased writer was taken over: it is stale
    ├── PluginError                    a plugin cannot be loaded or is invalid
    └── RunNotFoundError               no run with that id in the log

Errors carry the attributes decisions are made on (``retryable``, ``exit_code``,
``location``); callers never parse messages.
"""

from __future__ import annotations

__all__ = [
    "BusError",
    "ConcurrencyError",
    "ConfigError",
    "ConnectorError",
    "DeploymentError",
    "EventDecodeError",
    "EventLogError",
    "FailureHandlingError",
    "FencedError",
    "InputValidationError",
    "JobFailedError",
    "LeaseError",
    "PluginError",
    "RemoteCommandError",
    "RunNotFoundError",
    "StreamFlowError",
    "TransferError",
    "UnsupportedRequirementError",
    "WorkflowDefinitionError",
    "WorkflowExecutionError",
]


class StreamFlowError(Exception):
    """Root of every error raised by StreamFlow.

    Attributes:
        retryable: whether retrying the same operation may succeed.
    """

    retryable: bool = False


class WorkflowDefinitionError(StreamFlowError):
    """The workflow, its inputs or its configuration are invalid. Never retried."""


class InputValidationError(WorkflowDefinitionError):
    """An input object does not match the process's input schema."""


class ConfigError(WorkflowDefinitionError):
    """A ``streamflow.yml`` file does not match the configuration schema."""


class UnsupportedRequirementError(StreamFlowError):
    """The workflow needs a feature this runner does not support (CWL exit code 33)."""


class WorkflowExecutionError(StreamFlowError):
    """A job or the run failed while executing."""


class JobFailedError(WorkflowExecutionError):
    """A job's command finished with a failure.

    Args:
        message: what happened.
        exit_code: the command's exit code, if it ran.
        retryable: whether another attempt may succeed (e.g. ``temporaryFailCodes``).
    """

    def __init__(self, message: str, *, exit_code: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.retryable = retryable


class FailureHandlingError(WorkflowExecutionError):
    """The failure manager exhausted its policy for a job."""


class ConnectorError(StreamFlowError):
    """A connector could not perform an operation.

    Args:
        message: what happened.
        location: the location name involved, if any.
        retryable: whether another attempt may succeed.
    """

    def __init__(self, message: str, *, location: str | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.location = location
        self.retryable = retryable


class DeploymentError(ConnectorError):
    """A deployment could not be brought up or torn down."""


class RemoteCommandError(ConnectorError):
    """A command could not be started on a location."""


class TransferError(ConnectorError):
    """Data could not be copied between locations."""


class BusError(StreamFlowError):
    """The NATS bus cannot be reached, or answered unexpectedly."""

    retryable = True


class LeaseError(BusError):
    """A lease is held by another owner."""

    retryable = False


class EventLogError(StreamFlowError):
    """The event log cannot be read or written."""


class EventDecodeError(EventLogError):
    """A stored event cannot be decoded (unknown tag, corrupt payload)."""


class ConcurrencyError(EventLogError):
    """An optimistic-concurrency check failed: another writer appended first."""


class FencedError(ConcurrencyError):
    """A leased writer's append was refused: another process took its lease (it is stale)."""


class PluginError(StreamFlowError):
    """A plugin cannot be loaded, or does not implement its extension point."""


class RunNotFoundError(StreamFlowError):
    """No run with the given id exists in the event log."""
