"""The guarantees a finished saga's log and the participant ledger must show.

Each check returns a list of readable problems (empty: all is well), so a
test can report every broken saga at once instead of the first one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from saga import EventLog, SagaStatus, StoredEvent
from saga._engine.reading import view as read_view

from .ledger import Effect

__all__ = [
    "Attempt",
    "ledger_problems",
    "log_problems",
    "lost_attempts",
    "open_attempts",
    "saga_problems",
]

TERMINAL = frozenset({"SagaCompleted", "SagaCompensated", "SagaFailed"})
_STARTS = {"StepAttemptStarted": "do", "CompensationAttemptStarted": "undo"}
_ENDS = {
    "StepAttemptFailed": "do",
    "StepSucceeded": "do",
    "CompensationAttemptFailed": "undo",
    "StepCompensated": "undo",
}

Attempt = tuple[str, str, int]
"""(``"do"`` or ``"undo"``, step, attempt number)."""


def _attempt(e: StoredEvent, kind: str) -> Attempt:
    return (kind, str(e.data["step"]), int(e.data["attempt"]))


def open_attempts(history: Iterable[StoredEvent]) -> set[Attempt]:
    """Attempts whose start is in the log and whose outcome is not."""
    running: set[Attempt] = set()
    for e in history:
        if e.type in _STARTS:
            running.add(_attempt(e, _STARTS[e.type]))
        elif e.type in _ENDS:
            running.discard(_attempt(e, _ENDS[e.type]))
    return running


def lost_attempts(history: Iterable[StoredEvent]) -> set[Attempt]:
    """Attempts recorded as lost with their worker."""
    return {
        _attempt(e, _ENDS[e.type])
        for e in history
        if e.type in ("StepAttemptFailed", "CompensationAttemptFailed") and e.data.get("lost")
    }


def log_problems(history: Sequence[StoredEvent]) -> list[str]:
    """What is wrong with one finished saga's log (no operator actions in it)."""
    problems: list[str] = []
    if not history:
        return ["the log is empty"]
    sid = history[0].saga_id
    seqs = [e.seq for e in history]
    if seqs != list(range(1, len(history) + 1)):
        problems.append(f"{sid}: seq is not contiguous from 1: {seqs}")
    if history[0].type != "SagaStarted":
        problems.append(f"{sid}: the first event is {history[0].type}")
    terminal = [i for i, e in enumerate(history) if e.type in TERMINAL]
    if not terminal:
        problems.append(f"{sid}: not terminal (last event {history[-1].type} at seq {seqs[-1]})")
    elif len(terminal) > 1 or terminal[0] != len(history) - 1:
        after = [e.type for e in history[terminal[0] + 1:]]
        problems.append(f"{sid}: events after the terminal {history[terminal[0]].type}: {after}")
    compensating = False
    running: set[Attempt] = set()
    seen: set[Attempt] = set()
    for e in history:
        if e.type == "CompensationStarted":
            if compensating:
                problems.append(f"{sid}: CompensationStarted twice (seq {e.seq})")
            compensating = True
        elif e.type == "StepAttemptStarted" and compensating:
            problems.append(f"{sid}: forward attempt started after CompensationStarted (seq {e.seq})")
        if e.type in _STARTS:
            a = _attempt(e, _STARTS[e.type])
            if a in seen:
                problems.append(f"{sid}: attempt {a} started twice (seq {e.seq})")
            if any(r[:2] == a[:2] for r in running):
                problems.append(f"{sid}: attempt {a} started while another of its kind runs")
            seen.add(a)
            running.add(a)
        elif e.type in _ENDS:
            a = _attempt(e, _ENDS[e.type])
            if a not in running:
                problems.append(f"{sid}: outcome of {a} that was not running (seq {e.seq})")
            running.discard(a)
    if terminal and running:
        problems.append(f"{sid}: finished with attempts that have no outcome: {sorted(running)}")
    return problems


def ledger_problems(
    saga_id: str,
    status: SagaStatus,
    steps: Sequence[str],
    effects: Mapping[tuple[str, str], Effect],
    *,
    succeeded: Iterable[str] = (),
) -> list[str]:
    """What the participant shows that a saga with this status must not leave behind.

    Completed: every step's effect applied exactly once and never undone.
    Compensated: every effect that was applied undone exactly once, those of
    ``succeeded`` steps included; a reservation undone before it arrived
    (``void``) never applied.
    """
    problems: list[str] = []
    for step in steps:
        e = effects.get((saga_id, step))
        where = f"{saga_id}/{step}"
        if status is SagaStatus.COMPLETED:
            if e is None or (e.state, e.done, e.undone) != ("done", 1, 0):
                problems.append(f"{where}: completed saga, but the ledger shows {e}")
        elif status is SagaStatus.COMPENSATED:
            if e is None:
                if step in succeeded:
                    problems.append(f"{where}: the step succeeded but the ledger has no effect")
                continue
            if e.state == "done" or e.done > 1 or e.undone != e.done:
                problems.append(f"{where}: compensated saga, but the ledger shows {e}")
            if step in succeeded and (e.state, e.done, e.undone) != ("undone", 1, 1):
                problems.append(f"{where}: the step succeeded, then the ledger shows {e}")
        else:
            problems.append(f"{saga_id}: ended {status.value}")
    return problems


def saga_problems(
    store: EventLog, saga_id: str, steps: Sequence[str], effects: Mapping[tuple[str, str], Effect]
) -> list[str]:
    """Every check on one saga: its log, its index row and the participant's ledger."""
    history = store.load(saga_id)
    problems = log_problems(history)
    view = read_view(store, saga_id)
    summary = store.summary(saga_id)
    if summary.status is not view.status or summary.last_seq != len(history):
        problems.append(
            f"{saga_id}: index row says {summary.status.value} at seq {summary.last_seq}, "
            f"the log {view.status.value} at seq {len(history)}"
        )
    succeeded = [e.data["step"] for e in history if e.type == "StepSucceeded"]
    problems += ledger_problems(saga_id, view.status, steps, effects, succeeded=succeeded)
    return problems
