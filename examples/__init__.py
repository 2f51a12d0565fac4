"""Runnable examples (``saga worker examples.trip``)."""
