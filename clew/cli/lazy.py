"""The root command group, whose commands are imported when they run, not when clew starts.

Typer (which carries its own click) asks a group for its commands twice: to list them in
``--help`` and to run one. ``LazyGroup`` answers the first from a table of names and help
texts and imports only the module of the command being run, so ``clew --help`` and
``clew runs list`` pay for their own imports (the registry's, the server's), not for pandas,
SQLAlchemy and uvicorn all at once.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

import typer
import typer.core
import typer.main
from typer._click.core import Command, Context  # the click typer carries, which its groups use

from clew.cli.output import ClewGroup


@dataclass(frozen=True)
class Listed:
    """Where a command lives and the help line ``clew --help`` shows for it."""

    module: str
    attribute: str
    help: str

    def load(self, name: str) -> typer.core.TyperCommand | typer.core.TyperGroup:
        """Import the command (a Typer sub-app or a command function) and build it exactly as
        ``add_typer`` / ``command`` on the root app would have."""
        target = getattr(importlib.import_module(self.module), self.attribute)
        parent = typer.Typer()
        parent.callback()(_no_options)
        if isinstance(target, typer.Typer):
            parent.add_typer(target, name=name)
        else:
            parent.command(name)(target)
        built = typer.main.get_command(parent)
        assert isinstance(built, typer.core.TyperGroup)
        command = built.commands[name]
        assert isinstance(command, typer.core.TyperCommand | typer.core.TyperGroup)
        return command


def _no_options() -> None:
    """The stand-in root's callback: with one, Typer keeps it a group of one command."""


class LazyGroup(ClewGroup):
    """``ClewGroup`` over a ``Listed`` table; subclass it with ``listing``."""

    listed: Mapping[str, Listed] = {}

    @classmethod
    def listing(cls, listed: Mapping[str, Listed]) -> type[LazyGroup]:
        """A group class for ``typer.Typer(cls=...)``, which takes a class, not an instance."""
        return type("ClewCommands", (cls,), {"listed": dict(listed)})

    def list_commands(self, ctx: Context) -> list[str]:
        return [
            *self.listed,
            *(name for name in super().list_commands(ctx) if name not in self.listed),
        ]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """The loaded command, or a stand-in carrying its help line (for listings)."""
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in self.listed:
            return found
        return typer.core.TyperCommand(cmd_name, short_help=self.listed[cmd_name].help)

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        """Import the command about to run, so click finds the real one."""
        if args and args[0] in self.listed and args[0] not in self.commands:
            self.add_command(self.listed[args[0]].load(args[0]), args[0])
        return super().resolve_command(ctx, args)

    def load_all(self) -> dict[str, typer.core.TyperCommand | typer.core.TyperGroup]:
        """Every listed command, imported (for tests and documentation generators)."""
        return {name: listed.load(name) for name, listed in self.listed.items()}
