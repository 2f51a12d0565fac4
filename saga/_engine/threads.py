"""Step threads: reusable daemon threads that run a step with a time limit, or a whole drive
whose attempts' limits the waiting thread watches.

A step with a time limit must be abandoned when it overruns, whatever it does
(blocks, swallows its cancellation, never returns), so it cannot run on a
thread that has to go on afterwards. A drive therefore runs on a step thread
(:func:`supervised`) while its caller waits, watching the limit of the attempt
in progress: its attempts run inline on that thread, one after another, with
no handoff each (:func:`saga._engine.execution.run_attempt`). When an attempt
passes its limit, the waiting thread abandons the step thread there and then
(its late result is dropped) and the drive goes on from the attempt's timeout,
on a new step thread. Outside such a drive, an attempt with a limit is handed
to a step thread of its own.
"""

from __future__ import annotations

import contextvars
import functools
import os
import threading
import time
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, ClassVar, TypeVar

__all__ = ["WATCH_POLL", "Abandoned", "Job", "StepThread", "Watch", "current_watch", "supervised"]

T = TypeVar("T")

WATCH_POLL = 1.0
"""Seconds at most the thread waiting for a drive sleeps while no attempt of it has a limit: an
attempt whose limit comes later than that does not need to wake it."""


class Abandoned(BaseException):
    """Raised on a step thread whose attempt overran its limit, once the step returns: the drive
    went on without it, and this thread unwinds without touching the drive again."""


_local = threading.local()


class Watch:
    """A drive running on a step thread, as the thread waiting for it sees it: the limit of the
    attempt in progress (on the monotonic clock), and how the drive ended.

    The step thread wakes the waiting one only when the drive ends, or when an
    attempt's limit comes before the waiting thread would look again.
    """

    __slots__ = ("abandoned", "cond", "deadline", "error", "finished", "looks_at", "value")

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.deadline: float | None = None
        self.looks_at = 0.0
        self.abandoned = self.finished = False
        self.value: Any = None
        self.error: BaseException | None = None

    def begin(self, timeout: float) -> None:
        """An attempt with a limit ``timeout`` seconds away starts (on the step thread)."""
        with self.cond:
            self.deadline = time.monotonic() + timeout
            if self.deadline < self.looks_at:
                self.cond.notify()

    def end(self) -> bool:
        """The attempt returned (on the step thread); ``False``: it was abandoned meanwhile."""
        with self.cond:
            self.deadline = None
            return not self.abandoned

    def finish(self, value: Any, error: BaseException | None) -> None:
        """The drive ended (on the step thread)."""
        with self.cond:
            if not self.abandoned:
                self.finished, self.value, self.error = True, value, error
                self.cond.notify()

    def wait(self) -> bool:
        """Wait for the drive to end (``True``) or for its attempt to pass its limit, which
        abandons the step thread (``False``)."""
        with self.cond:
            while not self.finished:
                now = time.monotonic()
                if self.deadline is not None and now >= self.deadline:
                    self.abandoned = True
                    return False
                self.looks_at = now + WATCH_POLL if self.deadline is None else self.deadline
                self.cond.wait(self.looks_at - now)
            return True


def current_watch() -> Watch | None:
    """The watch of the drive this thread runs under :func:`supervised` (``None``: none)."""
    return getattr(_local, "watch", None)


def _watched(watch: Watch, body: Callable[[], Any], context: contextvars.Context) -> None:
    _local.watch = watch
    try:
        value = context.run(body)
    except Abandoned:
        return
    except BaseException as e:
        watch.finish(None, e)
    else:
        watch.finish(value, None)
    finally:
        _local.watch = None


def supervised(body: Callable[[], T], resume: Callable[[], Callable[[], T]], *, name: str) -> T:
    """Run ``body`` on a step thread, its attempts with a limit inline there (see the module's
    documentation), and return what it returns (or raise what it raises).

    When an attempt passes its limit the step thread is abandoned and
    ``resume()`` is called here: it records the attempt's timeout and returns
    what runs next, supervised in turn.
    """
    while True:
        watch = Watch()
        context = contextvars.copy_context()  # the caller's spans and settings go with the drive
        StepThread.take().give(Job(functools.partial(_watched, watch, body, context), name))
        if watch.wait():
            if watch.error is not None:
                raise watch.error
            return watch.value  # type: ignore[no-any-return]
        body = resume()


class Job:
    """One call handed to a step thread; ``done`` is released when it has returned or raised."""

    __slots__ = ("done", "error", "fn", "name", "value")

    def __init__(self, fn: Callable[[], Any], name: str) -> None:
        self.fn, self.name = fn, name
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()


class StepThread:
    """A daemon thread that runs jobs one at a time: a drive whose attempts may have a time limit,
    or one such attempt (``async`` steps on the thread's own event loop).

    Starting a thread per job costs more than the rest of a step's
    bookkeeping, so idle threads wait for the next job. A step that runs past
    its limit is abandoned: its thread finishes the call in its own time (as
    a daemon it cannot hold up the process's exit), its result is dropped, and
    only then does it become idle again.
    """

    _idle: ClassVar[list[StepThread]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()
    MAX_IDLE: ClassVar[int] = 64

    def __init__(self) -> None:
        self._jobs: SimpleQueue[Job] = SimpleQueue()
        threading.Thread(target=self._loop, name="saga-step", daemon=True).start()

    @classmethod
    def take(cls) -> StepThread:
        """An idle thread, or a new one."""
        with cls._lock:
            if cls._idle:
                return cls._idle.pop()
        return cls()

    @classmethod
    def _forget_idle(cls) -> None:
        """In a forked child the idle threads do not exist."""
        cls._idle = []
        cls._lock = threading.Lock()

    def give(self, job: Job) -> None:
        self._jobs.put(job)

    def _loop(self) -> None:
        me = threading.current_thread()
        step = None
        while True:
            job = self._jobs.get()
            if job.name != step:  # named after the step (or saga) it runs, for thread dumps
                step = job.name
                me.name = f"saga-step-{step}"
            try:
                job.value = job.fn()
            except BaseException as e:
                job.error = e
            with self._lock:
                idle = len(self._idle) < self.MAX_IDLE
                if idle:
                    self._idle.append(self)
            job.done.release()
            if not idle:
                return


os.register_at_fork(after_in_child=StepThread._forget_idle)
