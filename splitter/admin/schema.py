"""Python types to the schemas of an OpenAPI 3.0 document (a JSON Schema dialect).

The admin API's bodies are declared once, as `TypedDict` classes (`admin.bodies`), and
this module turns them into schemas; nothing else describes a body. Rules:

- `str`, `int`, `float`, `bool`: string, integer, number, boolean (an `int` where a
  `float` is declared is a number too, as in JSON). `None` in a union: `nullable`.
- `Literal["a", "b"]`: an enum of those values. `list[T]` and `tuple[T, ...]`: an array of
  T. `dict[str, T]`: an object whose every value is T. `A | B`: `anyOf` (with None
  left out and said by `nullable`).
- A `TypedDict` is a component of its own (`#/components/schemas/<class name>`), its
  keys the properties, `NotRequired` keys not required, its docstring the description.
  A body the API takes (`closed=True`) refuses other keys (`additionalProperties:
  false`), as the handlers do; a body it answers may gain keys, so it stays open. One
  class is never used both ways (its component would mean two things).
- `Annotated[T, Meta(...)]` adds bounds and words: `minimum`, `maximum` (and whether they
  are exclusive), `pattern`, `min_length`, `min_items`, `min_properties`, `enum`,
  `format`, `description`. The bounds are the
  constants the validation uses (`config.model.MAX_WEIGHT`, ...), never numbers copied.

Every schema is built the same way each time, so the document is a pure function of the
route table (`admin.openapi`).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, Required, Union, get_args, get_origin

JSON = dict[str, Any]
REF = "#/components/schemas/"


@dataclass(frozen=True, slots=True)
class Meta:
    """Bounds and words for an `Annotated` type."""

    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    pattern: str | None = None
    min_length: int | None = None
    min_items: int | None = None
    min_properties: int | None = None
    enum: tuple[str, ...] | None = None
    format: str | None = None
    description: str | None = None

    def apply(self, schema: JSON) -> JSON:
        out = dict(schema)
        if self.minimum is not None:
            out["minimum"] = self.minimum
            if self.exclusive_minimum:
                out["exclusiveMinimum"] = True
        if self.maximum is not None:
            out["maximum"] = self.maximum
            if self.exclusive_maximum:
                out["exclusiveMaximum"] = True
        if self.pattern is not None:
            out["pattern"] = self.pattern
        if self.min_length is not None:
            out["minLength"] = self.min_length
        if self.min_items is not None:
            out["minItems"] = self.min_items
        if self.min_properties is not None:
            out["minProperties"] = self.min_properties
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.format is not None:
            out["format"] = self.format
        if self.description is not None:
            out["description"] = self.description
        return out


_SCALARS: dict[Any, JSON] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
}
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and typing.is_typeddict(tp)


class Components:
    """The component schemas met while building schemas: class name -> schema."""

    def __init__(self) -> None:
        self.schemas: dict[str, JSON] = {}
        self._classes: dict[str, tuple[type, bool]] = {}

    def schema(self, tp: Any, closed: bool = False) -> JSON:
        """The schema of `tp`; a TypedDict met on the way is added as a component."""
        origin = get_origin(tp)
        if origin is typing.Annotated:
            inner, *extras = get_args(tp)
            out = self.schema(inner, closed)
            for extra in extras:
                if isinstance(extra, Meta):
                    out = extra.apply(out)
            return out
        if origin in (NotRequired, Required):
            return self.schema(get_args(tp)[0], closed)
        if tp is object:  # any JSON value
            return {}
        if tp in _SCALARS:
            return dict(_SCALARS[tp])
        if is_typeddict(tp):
            return {"$ref": REF + self._component(tp, closed)}
        if origin is Literal:
            values = list(get_args(tp))
            kinds = {_JSON_TYPES[type(v)] for v in values}
            if len(kinds) != 1:
                raise TypeError(f"a Literal of one JSON type only: {tp!r}")
            return {"type": kinds.pop(), "enum": values}
        if origin in (Union, types.UnionType):
            return self._union(get_args(tp), closed)
        if origin is list or (origin is tuple and get_args(tp)[1:] == (Ellipsis,)):
            return {"type": "array", "items": self.schema(get_args(tp)[0], closed)}
        if origin is dict:
            key, value = get_args(tp)
            if key is not str:
                raise TypeError(f"JSON object keys are strings: {tp!r}")
            return {"type": "object", "additionalProperties": self.schema(value, closed)}
        raise TypeError(f"no JSON schema for {tp!r}")

    def _union(self, members: tuple[Any, ...], closed: bool) -> JSON:
        nullable = type(None) in members
        rest = [m for m in members if m is not type(None)]
        if len(rest) == 1:
            out = self.schema(rest[0], closed)
        else:
            out = {"anyOf": [self.schema(m, closed) for m in rest]}
        if nullable:
            if "$ref" in out:  # OpenAPI 3.0: siblings of $ref are ignored
                out = {"allOf": [out]}
            out["nullable"] = True
        return out

    def _component(self, cls: type, closed: bool) -> str:
        name = cls.__name__
        known = self._classes.get(name)
        if known is not None:
            if known != (cls, closed):
                raise TypeError(f"{name}: one name, two schemas (a body taken and answered?)")
            return name
        self._classes[name] = (cls, closed)
        self.schemas[name] = {}  # a placeholder: a class may refer to itself
        properties, required = self.fields(cls, closed)
        out: JSON = {"type": "object"}
        if cls.__doc__:
            out["description"] = " ".join(cls.__doc__.split())
        if required:
            out["required"] = required
        out["properties"] = properties
        if closed:
            out["additionalProperties"] = False
        self.schemas[name] = out
        return name

    def fields(self, cls: type, closed: bool = False) -> tuple[dict[str, JSON], list[str]]:
        """A TypedDict's keys with their schemas, and those required (query parameters
        are described this way, not as a component)."""
        if not is_typeddict(cls):
            raise TypeError(f"not a TypedDict: {cls!r}")
        hints = typing.get_type_hints(cls, include_extras=True)
        required = [k for k, t in hints.items() if _required(cls, k, t)]
        return {k: self.schema(t, closed) for k, t in hints.items()}, required


def _required(cls: type, key: str, hint: Any) -> bool:
    # Read from the hint too: under `from __future__ import annotations`, Python 3.11 does
    # not see NotRequired when it makes the class, and counts the key as required.
    origin = get_origin(hint)
    if origin is NotRequired:
        return False
    return origin is Required or key in cls.__required_keys__  # type: ignore[attr-defined]
