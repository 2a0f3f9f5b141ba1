"""Command-line interface: a click root group with lazily imported stage subcommands."""

from .main import SUBCOMMANDS, cli, main

__all__ = ["SUBCOMMANDS", "cli", "main"]
