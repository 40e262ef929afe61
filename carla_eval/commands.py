"""Subcommands of ``carla-eval`` contributed by other installed packages.

A package adds a subcommand by naming a :class:`Command` object in the entry-point group
``carla_eval.commands`` of its ``pyproject.toml``::

    [project.entry-points."carla_eval.commands"]
    collect = "training.cli_collect:COMMAND"

This is how ``carla-eval collect`` and ``carla-eval probe`` reach the ``training`` package while
``carla_eval`` never imports it: ``training`` uses the harness, the harness knows nothing of
training. A contributed command that cannot be imported is still listed; running it prints the
import error and exits 2 (the other subcommands keep working).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable

ENTRY_POINT_GROUP = "carla_eval.commands"


@dataclass(frozen=True)
class Command:
    """One contributed subcommand: ``carla-eval NAME ...``.

    ``add_arguments(parser)`` fills its argparse sub-parser; ``run(args)`` runs it and returns the
    process exit code. Both should import their heavy dependencies lazily: every ``carla-eval``
    call builds every parser. ``load_error``: why a registered command could not be loaded (then
    ``run`` only reports it, whatever the arguments).
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    load_error: str | None = None


class CommandError(RuntimeError):
    """The installed packages register contradicting subcommands (a bug in their metadata)."""


def _unavailable(name: str, value: str, exc: BaseException) -> Command:
    reason = f"{type(exc).__name__}: {exc}"

    def run(args: argparse.Namespace) -> int:
        print(f"carla-eval {name}: the command registered as {value!r} cannot be loaded ({reason})", file=sys.stderr)
        return 2

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        pass

    return Command(name, f"(cannot be loaded: {reason})", add_arguments, run, load_error=reason)


def installed_entry_points() -> list[Any]:
    """The entry points of :data:`ENTRY_POINT_GROUP` in the installed distributions."""
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def load_commands(reserved: Iterable[str] = (), entry_points: Iterable[Any] | None = None) -> list[Command]:
    """The contributed commands, sorted by name.

    Args:
        reserved: names the harness defines itself (a contributed command may not take one).
        entry_points: objects with ``name``, ``value`` and ``load()`` (default: the installed ones).

    Raises:
        CommandError: two different registrations of one name, a reserved name, or an entry point
            that loads to something other than a :class:`Command` of its own name.
    """
    reserved = set(reserved)
    chosen: dict[str, Any] = {}
    for ep in installed_entry_points() if entry_points is None else entry_points:
        if ep.name in reserved:
            raise CommandError(f"entry point {ep.name} = {ep.value!r} ({ENTRY_POINT_GROUP}) takes a built-in command's name")
        if ep.name in chosen and chosen[ep.name].value != ep.value:
            raise CommandError(f"command {ep.name!r} is registered twice ({ENTRY_POINT_GROUP}): "
                               f"{chosen[ep.name].value!r} and {ep.value!r}")
        chosen[ep.name] = ep
    commands = []
    for name in sorted(chosen):
        ep = chosen[name]
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            commands.append(_unavailable(name, ep.value, exc))
            continue
        if not isinstance(obj, Command) or obj.name != name:
            raise CommandError(f"entry point {name} = {ep.value!r} ({ENTRY_POINT_GROUP}) is not a "
                               f"carla_eval.commands.Command named {name!r}: {obj!r}")
        commands.append(obj)
    return commands
