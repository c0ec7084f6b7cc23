"""Tests of the StreamFlow-compatible exception names."""

from __future__ import annotations

import pytest

from streamflow import errors
from streamflow.core import exception


def test_every_error_is_reexported() -> None:
    """streamflow.core.exception re-exports every name of streamflow.errors."""
    for name in errors.__all__:
        assert getattr(exception, name) is getattr(errors, name)


def test_streamflow_aliases() -> None:
    """The *Exception names alias the *Error classes."""
    assert exception.WorkflowException is errors.StreamFlowError
    assert exception.WorkflowDefinitionException is errors.WorkflowDefinitionError
    assert exception.WorkflowExecutionException is errors.WorkflowExecutionError
    assert exception.FailureHandlingException is errors.FailureHandlingError
    assert exception.InvalidPluginException is errors.PluginError


def test_unrecoverable_catches_definition_and_failure_handling_errors() -> None:
    """except UnrecoverableWorkflowException catches definition and failure-handling errors only."""
    for error in (
        errors.ConfigError("x"),
        errors.FailureHandlingError("y"),
        errors.UnsupportedRequirementError("z"),
    ):
        with pytest.raises(exception.UnrecoverableWorkflowException):
            raise error
    assert not isinstance(errors.JobFailedError("j"), exception.UnrecoverableWorkflowException)


def test_command_timeout_error_is_a_timeout() -> None:
    """CommandTimeoutError is a RemoteCommandError and a builtin TimeoutError, not retryable."""
    error = exception.CommandTimeoutError("slow", location="d/localhost")
    assert isinstance(error, errors.RemoteCommandError) and isinstance(error, TimeoutError)
    assert error.retryable is False and error.location == "d/localhost"
