"""Inspecting the log: a saga's history and timelines, the statistics table."""
