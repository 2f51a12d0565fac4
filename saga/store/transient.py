"""Transient database faults: which errors are worth retrying, and the policy that retries them.

A dropped connection, a server restart, ``pg_terminate_backend``, a
serialization failure or a deadlock abort the transaction without changing
anything, so the store runs the whole transaction again. The one exception
is a connection lost during ``COMMIT``: the transaction may or may not have
committed. The store's append makes that retry safe by recognising its own
events (see :meth:`saga.store.sql.SqlEventStore.append`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy import exc as sa_exc
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from saga.errors import SagaError, StoreError

__all__ = ["first_line", "is_transient", "retrying", "translated"]

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("saga.store")

# SQLSTATE classes after which running the transaction again can succeed:
# connection exceptions, transaction rollback (serialization failure,
# deadlock), insufficient resources, operator intervention (admin shutdown,
# cannot connect now, query cancelled), lock not available.
_TRANSIENT_CLASSES = ("08", "40", "53", "57")
_TRANSIENT_STATES = frozenset({"55P03", "55006"})


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` (a SQLAlchemy error) may go away if the transaction runs again."""
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        sqlstate = getattr(error.orig, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate[:2] in _TRANSIENT_CLASSES or sqlstate in _TRANSIENT_STATES
        sqlite_error = getattr(error.orig, "sqlite_errorname", None)
        if isinstance(sqlite_error, str):  # SQLite stayed busy or locked past its timeout
            return sqlite_error.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
        # No SQLSTATE: the driver lost or could not open the connection.
        return isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)
    return isinstance(error, sa_exc.DisconnectionError | sa_exc.TimeoutError)


def first_line(error: BaseException) -> str:
    """The first line of a (driver) error's message, for logs and ``StoreError``."""
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    log.warning("transient database error (attempt %d), retrying: %s", state.attempt_number,
                first_line(error) if error is not None else "?")


def retrying(fn: Callable[[], T], *, give_up_after: float) -> T:
    """Call ``fn`` until it returns, retrying transient faults for up to ``give_up_after`` seconds.

    Backs off exponentially with jitter (50 ms doubling up to 2 s); the last
    error is re-raised when the time is spent or the error is not transient.
    """
    try:
        return fn()  # the common case, without the cost of building a retry loop
    except Exception as e:
        if give_up_after <= 0 or not is_transient(e):
            raise
        log.warning("transient database error (attempt 1), retrying: %s", first_line(e))
    policy = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_delay(give_up_after),
        wait=wait_exponential(multiplier=0.05, max=2.0) + wait_random(0, 0.05),
        before_sleep=_log_retry,
        reraise=True,
    )
    return policy(fn)


def translated(fn: Callable[P, T]) -> Callable[P, T]:
    """A store's method that retries transient faults (for the store's ``retry_for`` seconds,
    if it has that attribute), then re-raises driver errors as ``StoreError`` (ours pass
    through).

    The method runs whole again after a transient fault, so it must be one
    transaction, or safe to repeat.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        store = args[0]
        give_up_after = float(getattr(store, "retry_for", 0.0))
        try:
            return retrying(lambda: fn(*args, **kwargs), give_up_after=give_up_after)
        except SagaError:
            raise
        except sa_exc.SQLAlchemyError as e:
            raise StoreError(f"database error: {first_line(e)}") from e

    return wrapper
