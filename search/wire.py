"""What crosses a process boundary from a worker: JSON, never a pickle.

A worker runs code generated from a program the search did not write, so what it sends back
must not be able to run anything in the search process when it is read. Pickles can (a
``__reduce__`` is a function call); JSON cannot. The parent still sends its jobs as pickles
(a function reference and arguments the search itself built), only the way back is JSON.

A value is plain JSON (None, bool, int, float, str, lists, dicts with string keys), or an
instance of a registered record type, which travels as ``{"__type__": NAME, "data": ...}``
through the type's own ``to_dict``/``from_dict``. Tuples arrive as lists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

_TYPE = "__type__"
_REGISTRY: dict[str, tuple[type, Callable[[Mapping[str, Any]], Any]]] = {}


class WireError(ValueError):
    """A value cannot be sent as JSON, or a message names an unknown record type."""


def register(cls: type) -> type:
    """Let instances of `cls` (with `to_dict` and a `from_dict` classmethod) cross the wire."""
    if not (hasattr(cls, "to_dict") and hasattr(cls, "from_dict")):
        raise TypeError(f"{cls.__name__} needs to_dict and from_dict to cross the wire")
    _REGISTRY[cls.__name__] = (cls, cls.from_dict)
    return cls


def encode(value: Any) -> Any:
    """`value` as JSON-ready data; raises WireError for anything else (a lambda, a tensor)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {_TYPE: "float", "data": repr(value)}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise WireError("only dicts with string keys cross the wire")
        if _TYPE in value:
            raise WireError(f"a dict may not use the key {_TYPE!r}")
        return {k: encode(v) for k, v in value.items()}
    name = type(value).__name__
    if name in _REGISTRY and isinstance(value, _REGISTRY[name][0]):
        return {_TYPE: name, "data": encode(value.to_dict())}
    raise WireError(f"a {name} cannot be sent as JSON")


def decode(data: Any) -> Any:
    if isinstance(data, list):
        return [decode(v) for v in data]
    if isinstance(data, dict):
        if _TYPE in data:
            name = data[_TYPE]
            if name == "float":
                return float(data["data"])
            if name not in _REGISTRY:
                raise WireError(f"unknown record type {name!r} on the wire")
            return _REGISTRY[name][1](decode(data["data"]))
        return {k: decode(v) for k, v in data.items()}
    return data


def dumps(value: Any) -> bytes:
    return json.dumps(encode(value), allow_nan=False).encode("utf-8")


def loads(raw: bytes) -> Any:
    return decode(json.loads(raw.decode("utf-8")))
