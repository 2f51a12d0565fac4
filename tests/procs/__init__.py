"""Processes the crash and torture tests run, and what they share.

The scripts here run as real subprocesses (``python -m tests.procs.crash_worker``,
``python -m tests.procs.worker``); the tests kill them with real signals and
then check the log and the participant ledger against the saga guarantees.
"""
