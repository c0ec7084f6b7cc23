"""Batch-script pieces shared by the queue-manager connectors: the command line, templates, options."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamflow.errors import RemoteCommandError

__all__ = [
    "JobStatus",
    "command_line",
    "connector_schema",
    "long_options",
    "parse_memory_mb",
    "render_template",
    "schema_flag",
    "schema_integer",
    "schema_string",
]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
"""A ``{{ name }}`` placeholder of a batch-script template."""
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Replace each ``{{ name }}`` of ``template`` with ``values[name]`` (no other syntax).

    Raises:
        KeyError: if a placeholder has no value.
    """
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


@dataclass(frozen=True)
class JobStatus:
    """What the queue says about a job.

    Attributes:
        state: the queue's state name (``RUNNING``, ``COMPLETED``, ``C``...).
        done: whether the job has ended.
        exit_code: the job's exit code when the queue knows it (signals as 128+n).
    """

    state: str
    done: bool
    exit_code: int | None = None


def schema_string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def schema_integer(description: str, minimum: int = 1) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "description": description}


def schema_flag(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


def parse_memory_mb(value: Any) -> float | None:
    """Return a Slurm/PBS-style memory amount (``4096``, ``4G``, ``512mb``) in MB, or ``None``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTkmgt]?)[Bb]?\s*", str(value))
    if match is None:
        return None
    scale = {"k": 1 / 1024, "": 1.0, "m": 1.0, "g": 1024.0, "t": 1024.0**2}[match.group(2).lower()]
    return float(match.group(1)) * scale


def command_line(
    command: Sequence[str],
    environment: Mapping[str, str] | None,
    workdir: str | None,
    stdin: str | None,
    rc_file: str | None,
) -> str:
    """Return the job's command as one shell command (what ``{{ streamflow_command }}`` becomes).

    The command runs in a subshell (``cd``, ``export``, ``exec`` with quoted words and
    ``stdin`` redirected); its exit code is written to ``rc_file`` and is the exit status of
    the whole line.

    Raises:
        RemoteCommandError: if an environment variable name is not a valid shell name.
    """
    steps: list[str] = []
    if workdir:
        steps.append(f"cd {shlex.quote(workdir)}")
    if environment:
        for name in environment:
            if not ENV_NAME.fullmatch(name):
                raise RemoteCommandError(
                    f"environment variable name {name!r} cannot be exported by a batch script",
                    retryable=False,
                )
        steps.append(
            "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in environment.items())
        )
    redirect = shlex.quote(stdin) if stdin else "/dev/null"
    steps.append("exec " + " ".join(shlex.quote(word) for word in command) + f" <{redirect}")
    line = "( " + " && ".join(steps) + " )"
    if rc_file is None:
        return line
    return f'{{ {line}; __sf_rc=$?; printf "%s\\n" "$__sf_rc" >{shlex.quote(rc_file)}; (exit "$__sf_rc"); }}'


def long_options(
    options: Mapping[str, Any], flags: Mapping[str, str], names: Mapping[str, str] | None = None
) -> list[str]:
    """Return ``--kebab-case=value`` for each camelCase option; a flag gives ``--name`` when true.

    ``extra`` (a list of options written verbatim) is allowed; ``names`` maps keys whose option
    name is not their kebab case.

    Raises:
        ValueError: if a value contains white space, or an extra option does not start with ``-``.
    """
    directives = []
    for key, value in options.items():
        if key == "extra":
            for item in value:
                if not str(item).startswith("-"):
                    raise ValueError(f"extra option {item!r} does not start with '-'")
                directives.append(str(item))
            continue
        option = "--" + (
            (names or {}).get(key) or re.sub(r"([A-Z])", lambda m: "-" + m.group(1).lower(), key)
        )
        if key in flags:
            if value:
                directives.append(option)
            continue
        text = str(value)
        if re.search(r"\s", text):
            raise ValueError(f"{key}: {text!r} contains white space")
        directives.append(f"{option}={text}")
    return directives


def connector_schema(
    kind: str, directive: str, service_properties: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Return the ``config`` schema of a queue-manager connector whose services take ``service_properties``."""
    service = {
        "type": "object",
        "description": f"Options of one {kind} service, turned into {directive} directives",
        "properties": {
            "file": schema_string(
                "Batch-script template for this service (overrides the deployment's file), "
                "relative to the directory of streamflow.yml"
            ),
            **service_properties,
        },
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://streamflow.di.unito.it/schemas/deployment/connector/{kind}.json",
        "type": "object",
        "properties": {
            "file": schema_string(
                "Batch-script template, relative to the directory of streamflow.yml; "
                "{{ streamflow_command }} marks where the job's command goes"
            ),
            "services": {
                "type": "object",
                "description": "Named option sets; a target's service picks one. Options: "
                + ", ".join(["file", *service_properties]),
                "additionalProperties": service,
            },
            "maxConcurrentJobs": {
                "type": "integer",
                "minimum": 1,
                "default": 1,
                "description": "How many jobs may be in the queue at once",
            },
            "pollingInterval": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 5,
                "description": "Seconds between two status queries of a submitted job",
            },
        },
        "additionalProperties": False,
    }
