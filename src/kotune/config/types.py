"""Field types as plain JSON, and checking a YAML value against one.

A type spec is what `typing` says about a dataclass field, written so it can be stored (the TRL/transformers field
schema is saved this way, so a config is checked without importing them):
"bool", "int", "float", "str", "dict", "null", "any", {"union": [...]}, {"literal": [...]}, {"list": spec} and
{"enum": [values]}.

>>> coerce("1e-4", "float")
0.0001
>>> coerce(5, {"union": ["int", "null"]})
5
>>> coerce("x", {"literal": ["a", "b"]})
Traceback (most recent call last):
...
TypeError: one of 'a', 'b'
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Literal

Spec = Any  # str | dict


def type_spec(hint: Any) -> Spec:
    """The JSON spec of a typing hint; types kotune does not model become "any" (the library checks them)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return "any"
    if hint is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return {"union": [type_spec(a) for a in typing.get_args(hint)]}
    if origin is Literal:
        return {"literal": list(typing.get_args(hint))}
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return {"list": type_spec(item)}
    if origin is dict or hint is dict:
        return "dict"
    if hint in (bool, int, float, str):
        return hint.__name__
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [m.value for m in hint]}
    if dataclasses.is_dataclass(hint):
        return "dict"
    return "any"


def describe(spec: Spec) -> str:
    if isinstance(spec, str):
        return {"null": "null", "dict": "a mapping", "any": "anything"}.get(spec, spec)
    if "union" in spec:
        return " or ".join(describe(s) for s in spec["union"] if s != "null")
    if "list" in spec:
        return f"a list of {describe(spec['list'])}"
    return "one of " + ", ".join(repr(v) for v in spec.get("literal", spec.get("enum", [])))


def coerce(value: Any, spec: Spec) -> Any:
    """`value` converted to `spec`, or TypeError saying what was expected.

    YAML reads `1e-4` as a string, so numbers in strings are accepted for float/int fields.
    """
    if spec == "any":
        return value
    if isinstance(spec, dict):
        return _coerce_compound(value, spec)
    if spec == "null":
        if value is None:
            return None
        raise TypeError("null")
    if spec == "dict":
        if isinstance(value, dict):
            return value
        raise TypeError("a mapping")
    if spec == "bool":
        if isinstance(value, bool):
            return value
        raise TypeError("true or false")
    if spec == "int":
        return _to_int(value)
    if spec == "float":
        return _to_float(value)
    if spec == "str":
        if isinstance(value, str):
            return value
        raise TypeError("a string")
    return value


def _coerce_compound(value: Any, spec: dict) -> Any:
    if "union" in spec:
        members = spec["union"]
        if value is None and "null" in members:
            return None
        # Exact-type members first, so "5" stays a str for `int | str` fields.
        for member in sorted(members, key=lambda m: 0 if _exact(value, m) else 1):
            if member == "null":
                continue
            try:
                return coerce(value, member)
            except TypeError:
                continue
        raise TypeError(describe(spec))
    if "literal" in spec or "enum" in spec:
        if value in spec.get("literal", spec.get("enum")):
            return value
        raise TypeError(describe(spec))
    if "list" in spec:
        item = spec["list"]
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and item == "str":
            return [str(value)]
        if not isinstance(value, list):
            raise TypeError(f"a list of {describe(item)}")
        return [coerce(v, item) for v in value]
    return value


def _exact(value: Any, spec: Spec) -> bool:
    return isinstance(spec, str) and spec in ("bool", "int", "float", "str") and type(value).__name__ == spec


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise TypeError("an integer")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("a number")
    if isinstance(value, (int, float)):
        return value  # ints stay ints: warmup_steps reads an int as steps and a float in [0, 1) as a ratio
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise TypeError("a number")


def dataclass_fields(cls) -> dict[str, dict]:
    """{name: {"type", "help", "choices"}} of a dataclass's init fields, in the stored schema's shape."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.init:
            out[f.name] = {"type": type_spec(hints[f.name]), "help": f.metadata.get("help", ""),
                           "choices": list(f.metadata["choices"]) if f.metadata.get("choices") else None}
    return out
