"""Pluggable ``streamflow`` subcommands.

Every module in this package that defines ``register(subparsers)`` and ``run(args) -> int``
becomes a subcommand: ``register`` adds its parser (and must set ``func=run`` with
``set_defaults``), ``run`` executes it and returns the exit code. ``main.py`` discovers
them, so a new command never has to edit the core CLI module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from typing import Protocol

__all__ = ["CommandModule", "discover"]


class CommandModule(Protocol):
    """What a command module provides."""

    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add the command's parser; set ``func`` to the handler with ``set_defaults``."""

    def run(self, args: argparse.Namespace) -> int:
        """Run the command; return the exit code."""


def discover() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """The ``register`` functions of every command module, in name order."""
    result = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            result.append(register)
    return result
