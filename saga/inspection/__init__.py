"""Inspecting the log: history, timelines, statistics, the audit of the hash chains."""
