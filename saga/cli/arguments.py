"""Argument types the commands share: each turns one command-line value into a number or fails
with one line."""

from __future__ import annotations

import argparse

from saga.text import shorten

__all__ = ["positive_int"]


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shorten(text)!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value
