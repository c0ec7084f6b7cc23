"""StreamFlow-compatible exception names.

Every error is defined once, in :mod:`streamflow.errors`; this module re-exports them and adds
the names the original StreamFlow used (``*Exception``) as aliases, so that code written against
``streamflow.core.exception`` keeps working. New code should use the ``*Error`` names.

Aliases:

* ``WorkflowException`` = :class:`~streamflow.errors.StreamFlowError`
* ``WorkflowDefinitionException`` = :class:`~streamflow.errors.WorkflowDefinitionError`
* ``WorkflowExecutionException`` = :class:`~streamflow.errors.WorkflowExecutionError`
* ``FailureHandlingException`` = :class:`~streamflow.errors.FailureHandlingError`
* ``InvalidPluginException`` = :class:`~streamflow.errors.PluginError`
* ``UnrecoverableWorkflowException``: a definition error or a failure-handling error; see
  :data:`UnrecoverableWorkflowException`.

This module also defines :class:`CommandTimeoutError`, raised by connectors when a command
exceeds its timeout.
"""

from __future__ import annotations

from streamflow.errors import (
    BusError,
    ConcurrencyError,
    ConfigError,
    ConnectorError,
    DeploymentError,
    EventDecodeError,
    EventLogError,
    FailureHandlingError,
    FencedError,
    InputValidationError,
    JobFailedError,
    LeaseError,
    PluginError,
    RemoteCommandError,
    RunNotFoundError,
    StreamFlowError,
    TransferError,
    UnsupportedRequirementError,
    WorkflowDefinitionError,
    WorkflowExecutionError,
)

__all__ = [
    "UNRECOVERABLE_ERRORS",
    "BusError",
    "CommandTimeoutError",
    "ConcurrencyError",
    "ConfigError",
    "ConnectorError",
    "DeploymentError",
    "EventDecodeError",
    "EventLogError",
    "FailureHandlingError",
    "FailureHandlingException",
    "FencedError",
    "InputValidationError",
    "InvalidPluginException",
    "JobFailedError",
    "LeaseError",
    "PluginError",
    "RemoteCommandError",
    "RunNotFoundError",
    "StreamFlowError",
    "TransferError",
    "UnrecoverableWorkflowException",
    "UnsupportedRequirementError",
    "WorkflowDefinitionError",
    "WorkflowDefinitionException",
    "WorkflowException",
    "WorkflowExecutionError",
    "WorkflowExecutionException",
    "WorkflowProvenanceException",
]


class CommandTimeoutError(RemoteCommandError, TimeoutError):
    """A command ran longer than its timeout and was killed.

    It is also a builtin :class:`TimeoutError`, so ``except TimeoutError`` catches it. It is not
    retryable by default: the same command with the same limit is likely to time out again.
    """

    def __init__(self, message: str, *, location: str | None = None, retryable: bool = False) -> None:
        super().__init__(message, location=location, retryable=retryable)


WorkflowException = StreamFlowError
"""StreamFlow name of :class:`~streamflow.errors.StreamFlowError`."""

WorkflowDefinitionException = WorkflowDefinitionError
"""StreamFlow name of :class:`~streamflow.errors.WorkflowDefinitionError`."""

WorkflowExecutionException = WorkflowExecutionError
"""StreamFlow name of :class:`~streamflow.errors.WorkflowExecutionError`."""

FailureHandlingException = FailureHandlingError
"""StreamFlow name of :class:`~streamflow.errors.FailureHandlingError`."""

InvalidPluginException = PluginError
"""StreamFlow name of :class:`~streamflow.errors.PluginError`."""

WorkflowProvenanceException = StreamFlowError
"""StreamFlow name for provenance errors; provenance has no dedicated branch yet."""

UNRECOVERABLE_ERRORS: tuple[type[StreamFlowError], ...] = (
    WorkflowDefinitionError,
    UnsupportedRequirementError,
    FailureHandlingError,
)
"""Errors that no retry or rollback can fix (StreamFlow's ``UnrecoverableWorkflowException``)."""

UnrecoverableWorkflowException = UNRECOVERABLE_ERRORS
"""StreamFlow's unrecoverable branch, as a tuple usable in ``except`` and ``isinstance``.

Upstream it is a class that ``WorkflowDefinitionException`` and ``FailureHandlingException``
inherit from; here those errors live in different branches (by who has to react), so the name is
kept as a tuple of the unrecoverable classes: ``except UnrecoverableWorkflowException:`` works,
raising it does not (raise one of its members instead).
"""
