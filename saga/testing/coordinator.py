"""A coordinator for tests: virtual time, injected faults, readable history checks."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, Self

from saga.coordinator import Coordinator
from saga.definition import Compensation, Saga, Step
from saga.errors import InvalidInput, PolicyError
from saga.events import Event
from saga.policies import seconds
from saga.state import SagaView
from saga.store.base import EventLog, StoredEvent
from saga.testing.injection import ErrorSpec, Fault, Instrumented
from saga.testing.limits import PastHorizon, SagaTestClock
from saga.text import count

__all__ = ["SagaDidNotRest", "SagaTestCoordinator", "load_events"]

DEFAULT_HORIZON = timedelta(days=365)


class SagaDidNotRest(AssertionError):
    """``run_until_rest`` crossed its horizon of virtual time and the saga was still active."""


def load_events(store: EventLog, saga_id: str) -> list[StoredEvent]:
    """A saga's events, oldest first; raises :class:`~saga.SagaNotFound`."""
    return store.load(saga_id)


class SagaTestCoordinator(Coordinator):
    """A :class:`~saga.Coordinator` on a :class:`SagaTestClock`, with what tests need on top.

    - :meth:`run_until_rest` drives a saga to rest, jumping the clock over
      backoffs, timeouts and leases: hours of retries take milliseconds.
    - :meth:`fail` and :meth:`hang` inject faults into a registered step or
      compensation without editing it.
    - :meth:`assert_history` compares a saga's event types with a list and
      shows a diff when they differ.

    Registering a saga instruments its steps (see :mod:`saga.testing.injection`);
    :meth:`close` (the fixture calls it after the test) undoes every fault
    and puts the steps' functions back.
    """

    def __init__(
        self,
        store: EventLog,
        sagas: Iterable[Saga] = (),
        *,
        clock: SagaTestClock | None = None,
        lease: float = 30.0,
        worker_id: str | None = None,
        poll_interval: float = 3600.0,
    ) -> None:
        if clock is not None and not isinstance(clock, SagaTestClock):
            raise InvalidInput(f"clock must be a saga.testing.SagaTestClock, not {clock!r}")
        self.test_clock = clock or SagaTestClock()
        self._instrumented: dict[int, Instrumented] = {}
        self._closed = False
        # poll_interval: on a virtual clock it only sets how far one sleep jumps at most.
        super().__init__(store, sagas, lease=lease, clock=self.test_clock, worker_id=worker_id,
                         poll_interval=poll_interval)

    # -- definitions ------------------------------------------------------------------------

    def register(self, saga: Saga) -> None:
        """Make ``saga`` runnable here, and instrument its steps for :meth:`fail` and :meth:`hang`."""
        super().register(saga)
        for step in saga.steps:
            for target in (step, step.compensation):
                if target is not None and id(target) not in self._instrumented:
                    self._instrumented[id(target)] = Instrumented(target, self.test_clock)

    def _find(self, step: Step | Compensation | str, compensation: bool) -> tuple[Saga, Instrumented]:
        """The registered saga holding ``step``, and the instrumented step or compensation."""
        found: list[tuple[Saga, Step]] = [
            (saga, s) for saga in self.sagas for s in saga.steps
            if step is s or (isinstance(step, str) and step == s.name)
            or (s.compensation is not None and step is s.compensation)
        ]
        what = step if isinstance(step, str) else getattr(step, "name", repr(step))
        if not found:
            raise InvalidInput(f"{what!r} is not a step of a saga registered with this coordinator")
        if len(found) > 1:
            names = ", ".join(sorted(f"{saga.name} v{saga.version}" for saga, _ in found))
            raise InvalidInput(f"step {what!r} is in several registered sagas ({names}): pass the Step")
        saga, s = found[0]
        target = s.compensation if compensation or isinstance(step, Compensation) else s
        if target is None:
            raise InvalidInput(f"step {s.name!r} of saga {saga.name!r} has no compensation")
        return saga, self._instrumented[id(target)]

    # -- faults -----------------------------------------------------------------------------

    def fail(
        self,
        step: Step | Compensation | str,
        *,
        times: int | None = 1,
        error: ErrorSpec = None,
        compensation: bool = False,
    ) -> Fault:
        """Make the next ``times`` attempts of ``step`` raise ``error``, then run it as written.

        ``step`` is a registered :class:`~saga.Step` (or its name); pass a
        :class:`~saga.definition.Compensation`, or ``compensation=True``, to
        fail the step's compensation instead. ``error`` is an exception
        instance or class (default :class:`~saga.testing.InjectedFailure`);
        the retry policy treats it as it would the step's own. ``times=None``
        fails every attempt. Works for plain and ``async`` functions.
        """
        _check_times(times)
        if error is not None and not _is_error(error):
            raise InvalidInput(f"error must be an exception instance or class, not {error!r}")
        if isinstance(error, type):
            try:
                error()
            except Exception as e:
                raise InvalidInput(
                    f"error {error.__name__} cannot be built without arguments ({e}); "
                    "pass an instance instead"
                ) from None
        _, instrumented = self._find(step, compensation)
        return instrumented.add(Fault(instrumented.target, times=times, error=error, hang=False))

    def hang(
        self,
        step: Step | Compensation | str,
        *,
        times: int | None = 1,
        compensation: bool = False,
    ) -> Fault:
        """Make the next ``times`` attempts of ``step`` hang until their time limit.

        The clock jumps to the attempt's limit (the step's ``timeout``, or the
        saga's deadline if sooner) and the attempt is recorded as timed out
        there, in doubt, exactly as an attempt still running at its limit.
        The step (or compensation) must have a limit.
        """
        _check_times(times)
        saga, instrumented = self._find(step, compensation)
        target = instrumented.target
        limited = target.timeout is not None or (
            saga.deadline is not None and isinstance(target, Step)
        )
        if not limited:
            raise InvalidInput(
                f"{target.name} has no timeout (and no saga deadline applies to it): "
                "a hang would never end"
            )
        return instrumented.add(Fault(target, times=times, error=None, hang=True))

    # -- driving ----------------------------------------------------------------------------

    def run_until_rest(self, saga_id: str, *, within: float | timedelta = DEFAULT_HORIZON) -> SagaView:
        """Drive the saga until it rests (completed, compensated or failed), jumping the clock.

        Backoffs, retry waits and expired leases pass in no real time. Raises
        :class:`SagaDidNotRest` if the saga is still active after ``within``
        (default: a year) of virtual time, e.g. a step that fails forever
        with unlimited attempts.
        """
        __tracebackhide__ = True
        try:
            limit = seconds(within, what="within")
        except PolicyError as e:
            raise InvalidInput(str(e)) from None
        assert limit is not None
        with self.test_clock.horizon(self.clock.now() + timedelta(seconds=limit)):
            try:
                return self.run(saga_id)
            except PastHorizon:
                pass
        summary = self.store.summary(saga_id)
        raise SagaDidNotRest(
            f"saga {saga_id} is still {summary.status.value} after {timedelta(seconds=limit)} "
            f"of virtual time (next due at {summary.wake_at}); its events: "
            f"{', '.join(self.history(saga_id))}"
        )

    # -- reading ----------------------------------------------------------------------------

    def events(self, saga_id: str) -> list[StoredEvent]:
        """The saga's events, oldest first."""
        return load_events(self.store, saga_id)

    def history(self, saga_id: str) -> list[str]:
        """The saga's event types, oldest first."""
        return [e.type for e in self.events(saga_id)]

    def assert_history(self, saga_id: str, expected: Sequence[str | type[Event]]) -> None:
        """Assert that the saga's event types are exactly ``expected`` (names or event classes).

        On a mismatch the assertion error shows both lists side by side as a diff.
        """
        __tracebackhide__ = True
        if isinstance(expected, str) or not isinstance(expected, Sequence):
            raise InvalidInput(f"expected must be a list of event type names, not {expected!r}")
        want = [_type_name(t) for t in expected]
        events = self.events(saga_id)
        actual = [e.type for e in events]
        if actual != want:
            diff = "\n".join(difflib.unified_diff(want, actual, "expected", "actual", lineterm="", n=2))
            log = "\n".join(_describe(e) for e in events)
            raise AssertionError(
                f"saga {saga_id}: history differs from the expected {count(len(want), 'event')} "
                f"(it has {len(actual)}):\n{diff}\nthe log:\n{log}"
            )

    # -- teardown ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def close(self) -> None:
        """Undo every injected fault, put the steps' functions back, stop the lease renewer."""
        if not self._closed:
            self._closed = True
            for instrumented in self._instrumented.values():
                instrumented.restore()
            self._instrumented.clear()
        super().close()


def _check_times(times: object) -> None:
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise InvalidInput(f"times must be a whole number >= 1 or None (every attempt), got {times!r}")


def _is_error(error: object) -> bool:
    return isinstance(error, BaseException) or (
        isinstance(error, type) and issubclass(error, BaseException)
    )


def _describe(e: StoredEvent) -> str:
    """One line of a log for an assertion message: seq, type, step, attempt, error."""
    data = e.data
    parts = [f"{e.seq:>4} {e.type}"]
    if "step" in data and data["step"] is not None:
        parts.append(f"{data['step']}" + (f" #{data['attempt']}" if "attempt" in data else ""))
    if "error_type" in data:
        parts.append(f"{data['error_type']}: {data.get('message', '')}"[:120])
    if data.get("timed_out"):
        parts.append("(timed out)")
    return "  ".join(parts)


def _type_name(t: Any) -> str:
    if isinstance(t, str):
        return t
    if isinstance(t, type) and issubclass(t, Event):
        return t.type_name()
    raise InvalidInput(f"expected event type names or event classes, got {t!r}")
