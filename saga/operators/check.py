"""Before a deploy: which sagas in flight could the new definitions not continue?

:func:`check` replays every saga still in flight (running, compensating or
failed, which an operator's retry makes compensating again) against a set of
definitions, with the rule a worker applies before it drives a saga
(:func:`saga._engine.decide.check_fits`), and reports each one that would get stuck:

- ``not_registered``: its name and version are not among the definitions;
- ``step_missing``: a step it started, completed or skipped no longer exists;
- ``compensation_missing``: a step whose compensation it has begun has lost
  its compensation;
- ``input_invalid``: its input does not fit the input model, or its sealed
  values do not open with the store's keys (a saga forked or written by an
  older release); ``result_invalid``: the same for a step's result (one an
  operator gave with ``skip``, say). Values sealed while no key is set are
  not checked.

What a saga's log has not reached yet (a compensation it has not started) is
not in its log, so only a definition kept under the same version can change
it unseen: change a saga under a new version (see the README).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from saga._engine.decide import check_fits
from saga._engine.reading import load_state
from saga.definition import Saga
from saga.errors import DefinitionMismatch, SagaNotFound
from saga.secrets.keys import KeyRing
from saga.secrets.sealing import unreadable
from saga.state import SagaState, SagaStatus
from saga.store.base import EventLog

__all__ = ["IN_FLIGHT", "Problem", "ProblemKind", "check"]

IN_FLIGHT = (SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED)
"""The statuses whose sagas a new definition must still be able to continue."""

ProblemKind = Literal[
    "not_registered", "step_missing", "compensation_missing", "input_invalid", "result_invalid"]

_ALL = 2**62


@dataclass(frozen=True, slots=True)
class Problem:
    """A saga in flight that the checked definitions cannot continue, and why."""

    saga_id: str
    name: str
    version: int
    status: SagaStatus
    kind: ProblemKind
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The problem as a JSON object."""
        return {"id": self.saga_id, "name": self.name, "version": self.version,
                "status": self.status.value, "kind": self.kind, "reason": self.reason}


def check(store: EventLog, sagas: Iterable[Saga]) -> Iterator[Problem]:
    """Each saga in flight in ``store`` that ``sagas`` cannot continue, by status then id."""
    definitions = {(s.name, s.version): s for s in sagas}
    for status in IN_FLIGHT:
        for row in sorted(store.find(status=status, limit=_ALL), key=lambda r: r.saga_id):
            try:
                state = load_state(store, row.saga_id)
            except SagaNotFound:  # pragma: no cover - sagas are never deleted
                continue
            problem = _problem(state, definitions, store.key_ring)
            if problem is not None:
                yield problem


def _problem(state: SagaState, definitions: dict[tuple[str, int], Saga], keys: KeyRing | None
             ) -> Problem | None:
    saga = definitions.get((state.name, state.version))
    if saga is None:
        versions = sorted(v for n, v in definitions if n == state.name)
        known = ", ".join(f"v{v}" for v in versions) or "none"
        return Problem(state.saga_id, state.name, state.version, state.status, "not_registered",
                       f"saga {state.name!r} version {state.version} is not registered "
                       f"(registered versions of {state.name!r}: {known})")
    # A failed saga is checked as the compensating saga a retry makes it.
    replayed = dataclasses.replace(state, status=SagaStatus.COMPENSATING)
    try:
        check_fits(replayed, saga)
    except DefinitionMismatch as e:
        kind: ProblemKind = ("step_missing" if not state.steps.keys() <= saga.step_names
                             else "compensation_missing")
        return Problem(state.saga_id, state.name, state.version, state.status, kind, str(e))
    value = unreadable(saga, state, keys)
    if value is not None:
        where, why = value
        return Problem(state.saga_id, state.name, state.version, state.status,
                       "input_invalid" if where == "input" else "result_invalid", why)
    return None
