"""The comparison of one request's answers: the primary's, the shadow's and, optionally,
the reference's (a second copy of the primary's version). Pure: data in, a frozen
`Comparison` out.

    compare(primary, shadow, rules, reference=None) -> Comparison
        result:       same | differ | noise | skipped
        differences:  the fields that differ and count, in order, with both values shown

What is compared, in this order (each difference is one *field*):

1. `status` ("status").
2. `content-type` ("header:content-type"), always: media type and parameter names in
   lower case, spaces around ";" and "=" dropped, the charset's value in lower case.
3. Every other header that is not in `rules.ignore_headers` ("header:etag"): names in lower
   case, values without surrounding spaces, a header's values compared as the ordered list
   of its field lines ("a, b" in one line is not two lines "a" and "b"). Content-length
   and the hop-by-hop headers (transfer-encoding, connection, ...:
   config.shadow.FRAMING_HEADERS) are never compared: the body is.
4. The body. When both answers are JSON (a content-type `*/json` or `*/*+json`, no
   content-encoding but identity, and a body that parses as UTF-8 JSON), structurally:
   object key order does not matter, numbers compare as JSON values (1 == 1.0, true is
   not 1), the `rules.ignore_json` pointers are left out (a `*` token matches any key or
   index), and each difference is named by its JSON pointer ("/price", "/items/3/name")
   at the highest place where the two differ: a key or index on one side only, values of
   different kinds, or two different scalars. A difference at the root is "body".
   Otherwise the body is compared byte for byte, as one field, "body".

Bounded work, whatever a backend sends: JSON that is not comparable in bounded time is
compared byte for byte instead (the field is then "body"): more than `MAX_VALUES` values
(judged before parsing from the count of ",", "[" and "{", an upper bound), nesting
deeper than `MAX_DEPTH` (a pointer of more than 64 tokens), an integer of more than 100
digits, a duplicate key in an object (two readers may keep different ones), NaN or
Infinity (not JSON). At most `MAX_DIFFERENCES` differences are listed per request
(`more` says when there were more); every value and field shown is cut to `MAX_SHOWN`
characters (the last one then "…").

With a reference: a field is noise for this request when the primary and the reference
differ in it, by the same rules (the value at that JSON pointer, or the whole body, or the
header's list); a difference counts only where they agree. The result is `differ` when at
least one difference counts, `noise` when every difference found is noise, `same` when
none is found.

`skipped`, with its `reason`, when the answers cannot be compared: a body over
`max_body` on any side (`Response.body` None: the data path stopped keeping it), or a
101 answer on any side (the connection left HTTP; there is no answer to compare).

Secrets: the values of `authorization`, `proxy-authorization`, `cookie` and `set-cookie`
are compared but never shown (`HIDDEN`); an absent header or JSON value is shown as
`ABSENT`. A body compared byte for byte is shown from a little before its first
differing byte, so that the difference is in view.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from splitter.config.model import SHADOW_IGNORE_HEADERS, Shadow
from splitter.config.shadow import (
    FRAMING_HEADERS,
    MAX_POINTER_TOKENS,
    WILDCARD,
    pointer_tokens,
)

__all__ = [
    "ABSENT",
    "DIFFER",
    "HIDDEN",
    "HIDDEN_HEADERS",
    "MAX_DEPTH",
    "MAX_DIFFERENCES",
    "MAX_SHOWN",
    "MAX_VALUES",
    "NOISE",
    "RESULTS",
    "SAME",
    "SKIPPED",
    "SKIP_MAX_BODY",
    "SKIP_UPGRADE",
    "Comparison",
    "Difference",
    "Header",
    "Response",
    "Rules",
    "compare",
    "cut",
]

SAME: Final = "same"
DIFFER: Final = "differ"
NOISE: Final = "noise"
SKIPPED: Final = "skipped"
RESULTS: Final = (SAME, DIFFER, NOISE, SKIPPED)
SKIP_MAX_BODY: Final = "max_body"  # a body over max_body on one side
SKIP_UPGRADE: Final = "upgrade"  # a 101 answer on one side

MAX_DEPTH: Final = MAX_POINTER_TOKENS  # JSON pointers of at most 64 tokens
MAX_VALUES: Final = 10_000  # JSON values (scalars and containers) per body
MAX_INT_DIGITS: Final = 100
MAX_DIFFERENCES: Final = 20
MAX_SHOWN: Final = 200  # characters of a value or field shown
HIDDEN_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
HIDDEN: Final = "(hidden)"
ABSENT: Final = "(absent)"

Header = tuple[bytes | str, bytes | str]  # (name, value) as received


@dataclass(frozen=True, slots=True)
class Response:
    """One answer as received: `body` None when it was over max_body (not kept)."""

    status: int
    headers: Sequence[Header] = ()
    body: bytes | None = b""


@dataclass(frozen=True, slots=True)
class Difference:
    """One field that differs: "status", "header:<name>", a JSON pointer, or "body".

    `group` is the field with every array index replaced by "*" ("/items/*/name"): what
    a tally counts, so that one field of a list is one line, not one per index. The
    values are shown as text, cut to MAX_SHOWN characters."""

    field: str
    group: str
    primary: str
    shadow: str


@dataclass(frozen=True, slots=True)
class Comparison:
    """The verdict on one request's answers: the statuses for the record, and with
    DIFFER the differences that count (noise left out), at most MAX_DIFFERENCES."""

    result: str  # SAME | DIFFER | NOISE | SKIPPED
    primary_status: int
    shadow_status: int
    differences: tuple[Difference, ...] = ()  # those that count (DIFFER), in order
    more: bool = False  # more differences counted than listed
    reason: str = ""  # SKIPPED: SKIP_MAX_BODY | SKIP_UPGRADE


class _Pointers:
    """The `ignore_json` pointers as a trie of tokens; `end` where a pointer ends."""

    __slots__ = ("children", "end")

    def __init__(self) -> None:
        self.children: dict[str, _Pointers] = {}
        self.end = False

    def add(self, tokens: Sequence[str]) -> None:
        node = self
        for token in tokens:
            node = node.children.setdefault(token, _Pointers())
        node.end = True


_States = tuple[_Pointers, ...]  # the trie nodes the path so far matches


def _step(states: _States, token: str) -> tuple[_States, bool]:
    """The states after one more token, and whether the value there is ignored."""
    if not states:
        return states, False
    after = []
    for node in states:
        child = node.children.get(token)
        if child is not None:
            after.append(child)
        if token != WILDCARD:  # else the wildcard's child was just taken
            child = node.children.get(WILDCARD)
            if child is not None:
                after.append(child)
    return tuple(after), any(n.end for n in after)


@dataclass(frozen=True, slots=True)
class Rules:
    """What a comparison leaves out: header names (lower case) and JSON pointers. Build
    it once per config (`Rules.of`), not per request."""

    ignore_headers: frozenset[str] = frozenset(SHADOW_IGNORE_HEADERS)
    ignore_json: tuple[str, ...] = ()
    _root: _States = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        root = _Pointers()
        for pointer in self.ignore_json:
            root.add(pointer_tokens(pointer))  # ValueError when it is not a pointer
        names = frozenset(h.lower() for h in self.ignore_headers)
        object.__setattr__(self, "ignore_headers", names)
        object.__setattr__(self, "_root", (root,) if root.children else ())

    @classmethod
    def of(cls, shadow: Shadow) -> Rules:
        return cls(frozenset(shadow.ignore_headers), shadow.ignore_json)


# ---------------------------------------------------------------------------------------
# One side, prepared


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return ABSENT


_MISSING: Final = _Absent()  # a JSON value or header that one side does not have
_NOT_JSON: Final = _Absent()  # a body that is not compared as JSON
_UNREAD: Final = _Absent()  # a body not parsed yet


class _Side:
    __slots__ = ("_tree", "body", "content_type", "headers", "status")

    def __init__(self, response: Response) -> None:
        self.status = response.status
        self.body = response.body or b""
        headers: dict[str, list[str]] = {}
        for name, value in response.headers:
            key = _text(name).strip().lower()
            headers.setdefault(key, []).append(_text(value).strip(" \t"))
        self.headers = headers
        self.content_type = _media_type(headers.get("content-type"))
        self._tree: Any = _UNREAD  # parsed on first use

    @property
    def tree(self) -> Any:
        """The body as JSON, or _NOT_JSON."""
        if self._tree is _UNREAD:
            self._tree = _NOT_JSON
            encoding = self.headers.get("content-encoding", ["identity"])
            if _is_json(self.content_type) and [e.lower() for e in encoding] == ["identity"]:
                self._tree = _parse_json(self.body)
        return self._tree


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _media_type(values: list[str] | None) -> str | None:
    """A content-type's values, normalised; several lines kept apart by newlines."""
    if not values:
        return None
    out = []
    for value in values:
        kind, *params = value.split(";")
        parts = [kind.strip().lower()]
        for param in params:
            name, _, param_value = param.partition("=")
            name, param_value = name.strip().lower(), param_value.strip()
            if name == "charset":
                param_value = param_value.strip('"').lower()
            if name:
                parts.append(f"{name}={param_value}")
        out.append("; ".join(parts))
    return "\n".join(out)


def _is_json(content_type: str | None) -> bool:
    if content_type is None or "\n" in content_type:
        return False
    kind = content_type.partition(";")[0]
    subtype = kind.partition("/")[2]
    return subtype == "json" or subtype.endswith("+json")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj


def _int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise ValueError("integer too long")
    return int(text)


def _refuse(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _parse_json(body: bytes) -> Any:
    # Every value but the root follows a "," or opens its container: an upper bound,
    # counted in C before anything is built.
    if body.count(b",") + body.count(b"[") + body.count(b"{") >= MAX_VALUES:
        return _NOT_JSON
    try:
        tree = json.loads(body, object_pairs_hook=_object, parse_int=_int, parse_constant=_refuse)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return _NOT_JSON
    return tree if _within_depth(tree) else _NOT_JSON


def _within_depth(tree: Any) -> bool:
    stack = [(tree, 0)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, dict | list) and children:
            if depth >= MAX_DEPTH:
                return False
            stack.extend((child, depth + 1) for child in children)
    return True


# ---------------------------------------------------------------------------------------
# JSON values


def _kind(value: Any) -> int:
    if value is None:
        return 0
    t = type(value)
    if t is bool:
        return 1
    if t is int or t is float:
        return 2
    if t is str:
        return 3
    return 4 if t is list else 5


def _index(token: str) -> int | None:
    if token.isascii() and token.isdigit() and (token == "0" or token[0] != "0"):
        return int(token)
    return None


def _at(tree: Any, tokens: Sequence[str]) -> Any:
    for token in tokens:
        if isinstance(tree, dict):
            tree = tree.get(token, _MISSING)
        elif isinstance(tree, list):
            i = _index(token)
            tree = tree[i] if i is not None and i < len(tree) else _MISSING
        else:
            return _MISSING
    return tree


def _members(a: Any, b: Any) -> Iterator[tuple[str, bool, Any, Any]]:
    """(token, is an index, a's value, b's value) of two lists or two objects."""
    if isinstance(a, list):
        for i in range(max(len(a), len(b))):
            yield str(i), True, a[i] if i < len(a) else _MISSING, b[i] if i < len(b) else _MISSING
        return
    for key, value in a.items():
        yield key, False, value, b.get(key, _MISSING)
    for key, value in b.items():
        if key not in a:
            yield key, False, _MISSING, value


def _equal(a: Any, b: Any, states: _States) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is b
    kind = _kind(a)
    if kind != _kind(b):
        return False
    if kind < 4:
        return bool(a == b)
    if not states and len(a) != len(b):
        return False
    for token, _, x, y in _members(a, b):
        after, ignored = _step(states, token)
        if not ignored and not _equal(x, y, after):
            return False
    return True


_Path = tuple[tuple[str, bool], ...]  # (token, is an index) from the root


def _json_differences(a: Any, b: Any, path: _Path, states: _States) -> Iterator[_Path]:
    """The paths of the highest places where a and b differ, in document order."""
    kind = _kind(a) if a is not _MISSING else -1
    if b is _MISSING or a is _MISSING or kind != _kind(b) or kind < 4:
        if not _equal(a, b, states):
            yield path
        return
    for token, is_index, x, y in _members(a, b):
        after, ignored = _step(states, token)
        if not ignored:
            yield from _json_differences(x, y, (*path, (token, is_index)), after)


def _pointer(path: _Path, *, group: bool = False) -> str:
    if not path:
        return "body"
    tokens = (
        "*" if group and is_index else t.replace("~", "~0").replace("/", "~1")
        for t, is_index in path
    )
    return "/" + "/".join(tokens)


# ---------------------------------------------------------------------------------------
# Comparing


@dataclass(frozen=True, slots=True)
class _Found:
    kind: str  # "status" | "header" | "json" | "body"
    name: str = ""  # a header's name
    path: _Path = ()  # a JSON difference's place


def _differences(p: _Side, s: _Side, rules: Rules) -> Iterator[_Found]:
    if p.status != s.status:
        yield _Found("status")
    if p.content_type != s.content_type:
        yield _Found("header", "content-type")
    left_out = rules.ignore_headers | FRAMING_HEADERS | {"content-type"}
    for name in sorted((p.headers.keys() | s.headers.keys()) - left_out):
        if p.headers.get(name) != s.headers.get(name):
            yield _Found("header", name)
    if p.body == s.body:
        return  # the same bytes: nothing in the body differs (and nothing is parsed)
    if p.tree is not _NOT_JSON and s.tree is not _NOT_JSON:
        for path in _json_differences(p.tree, s.tree, (), rules._root):
            yield _Found("json", path=path)
    else:
        yield _Found("body")


def _noise(found: _Found, p: _Side, r: _Side, rules: Rules) -> bool:
    """Whether the primary and the reference differ in the field found."""
    if found.kind == "status":
        return p.status != r.status
    if found.name == "content-type":
        return p.content_type != r.content_type
    if found.kind == "header":
        return p.headers.get(found.name) != r.headers.get(found.name)
    if p.tree is _NOT_JSON or r.tree is _NOT_JSON:
        return p.body != r.body
    tokens = [token for token, _ in found.path]
    states = rules._root
    for token in tokens:
        states, _ = _step(states, token)
    return not _equal(_at(p.tree, tokens), _at(r.tree, tokens), states)


def cut(text: str) -> str:
    """At most MAX_SHOWN characters, the last one "…" when cut."""
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _shown_header(name: str, values: list[str] | None) -> str:
    if not values:
        return ABSENT
    if name in HIDDEN_HEADERS:
        return HIDDEN
    if len(values) == 1:
        return cut(values[0])
    return cut(json.dumps(values, ensure_ascii=False))


def _shown_json(value: Any) -> str:
    if value is _MISSING:
        return ABSENT
    return cut(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


_CHUNK = 4096
_BEFORE = 20  # bytes shown before the first that differs


def _first_difference(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    for start in range(0, n, _CHUNK):  # slices compared in C, one chunk scanned in Python
        end = min(start + _CHUNK, n)
        if a[start:end] != b[start:end]:
            return next(i for i in range(start, end) if a[i] != b[i])
    return n  # one is the start of the other


def _shown_bytes(body: bytes, start: int) -> str:
    window = body[start : start + MAX_SHOWN].decode("utf-8", "backslashreplace")
    return cut(("…" if start else "") + window)


def _shown(found: _Found, p: _Side, s: _Side) -> Difference:
    if found.kind == "status":
        return Difference("status", "status", str(p.status), str(s.status))
    if found.kind == "header":
        name = cut(f"header:{found.name}")
        hp, hs = p.headers.get(found.name), s.headers.get(found.name)
        return Difference(name, name, _shown_header(found.name, hp), _shown_header(found.name, hs))
    if found.kind == "json":
        tokens = [token for token, _ in found.path]
        return Difference(
            cut(_pointer(found.path)),
            cut(_pointer(found.path, group=True)),
            _shown_json(_at(p.tree, tokens)),
            _shown_json(_at(s.tree, tokens)),
        )
    start = max(0, _first_difference(p.body, s.body) - _BEFORE)
    return Difference("body", "body", _shown_bytes(p.body, start), _shown_bytes(s.body, start))


def compare(
    primary: Response, shadow: Response, rules: Rules, reference: Response | None = None
) -> Comparison:
    """Compare the shadow's answer with the primary's (see the module's docstring)."""
    answers = (primary, shadow) if reference is None else (primary, shadow, reference)
    reason = ""
    if any(a.body is None for a in answers):
        reason = SKIP_MAX_BODY
    elif any(a.status == 101 for a in answers):
        reason = SKIP_UPGRADE
    if reason:
        return Comparison(SKIPPED, primary.status, shadow.status, reason=reason)
    p, s = _Side(primary), _Side(shadow)
    r = None if reference is None else _Side(reference)
    counted: list[Difference] = []
    noisy = more = False
    for found in _differences(p, s, rules):
        if r is not None and _noise(found, p, r, rules):
            noisy = True
            continue
        if len(counted) == MAX_DIFFERENCES:
            more = True
            break
        counted.append(_shown(found, p, s))
    result = DIFFER if counted else NOISE if noisy else SAME
    return Comparison(result, primary.status, shadow.status, tuple(counted), more)
