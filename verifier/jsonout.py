"""Strict JSON for everything the verifier prints or writes: no ``NaN`` or ``Infinity`` tokens (which many
JSON readers reject), NumPy values as plain numbers, anything else as its string.

A value that is not finite becomes ``null``; each output documents what its nulls mean (for a lower bound:
none known or minus infinity; for a rate: not measurable).
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any


def plain(value: Any) -> Any:
    """``value`` as JSON data: dicts, lists, strings, finite numbers, booleans and None (non-finite floats
    and NumPy NaNs become None, NumPy scalars and arrays plain numbers and lists, paths strings)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    tolist = getattr(value, "tolist", None)   # NumPy arrays and scalars, torch tensors
    if callable(tolist):
        return plain(tolist())
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`plain` ``(value)``, refusing any NaN or infinity that would remain."""
    return json.dumps(plain(value), allow_nan=False, **kwargs)
