"""Turning step inputs and outputs into JSON values and back."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel

__all__ = ["InvalidValue", "to_json_value"]

_SCALARS = (str, int, float, bool, type(None))


class InvalidValue(ValueError):
    """The value cannot be stored as JSON."""


def to_json_value(value: Any) -> Any:
    """``value`` as plain JSON (dicts, lists, strings, numbers, booleans, None).

    A pydantic model becomes its JSON dump; anything else that is not JSON
    (sets, bytes, arbitrary objects, NaN) is refused rather than guessed at,
    so what a step returns is exactly what a replay reads back.
    """
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return _check(value, "$")


def _check(value: Any, path: str) -> Any:
    if isinstance(value, _SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidValue(f"{path}: {value!r} is not a JSON number")
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidValue(f"{path}: object key {k!r} is not a string")
            out[k] = _check(v, f"{path}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [_check(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise InvalidValue(f"{path}: {type(value).__name__} is not a JSON value")
