"""The ``saga`` command line: argument parsing and printing over the library, nothing more."""

from saga.cli.command import main

__all__ = ["main"]
