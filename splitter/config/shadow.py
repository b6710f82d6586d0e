"""The `shadow` section: which pool gets copies of real requests, how many, and what of
their answers is compared (the comparison itself is splitter.shadow.compare).

```yaml
shadow:                     # top level (with the top-level pools), or in a route
  pool: canary              # gets the copies
  share: 0.05               # of the requests the route's weighted choice sends elsewhere
  reference: green          # optional: a second copy of the primary's version
  methods: [GET, HEAD]      # the default
  max_body: 64KiB           # the default
  max_in_flight: 64         # the default
  ignore_headers: [date, x-request-id, set-cookie, server, etag, last-modified]  # the default
  ignore_json: ["/generated_at", "/items/*/updated_at"]
```

Rules:

- `pool` and `share` are required. `pool` is one of the route's pools, and not the only
  one with a weight above 0 (the weighted choice would send every request to it, and
  nothing would be copied); it may have a weight (then only the requests sent elsewhere
  are copied). `share` is from 0 to 1; 0 keeps the section ready and copies nothing
  until the share is changed at runtime or a rollout's test step sets one.
- `reference`, when given, is another of the route's pools than `pool`; it may be a pool
  with a weight (then its copy goes to the primary's own version, which is what it is for).
- `methods`: a non-empty list of method names, compared in upper case (`get` is GET), no
  duplicates; CONNECT is refused (a tunnel has no answer to compare).
- `max_body` (a size, at most 16 MiB: every body compared is held in memory, up to
  `max_in_flight` copies at once, each with the primary's and the reference's answer)
  and `max_in_flight` (1 to 10,000).
- `ignore_headers`, when given, replaces the default list (an empty list compares every
  header); names are compared case-insensitively. `content-type` is always compared and
  cannot be listed; content-length and the hop-by-hop headers (transfer-encoding,
  connection, ...: `FRAMING_HEADERS`) are never compared (they say how an answer was
  sent; the body comparison covers what it says).
- `ignore_json`: at most 100 JSON pointers (RFC 6901: "/a/b", "~1" for "/" and "~0" for
  "~" within a name) of at most 64 tokens (the depth at which JSON comparison stops), each
  starting with "/"; a token that is exactly `*` matches any key or index (so a key
  named "*" cannot be told apart from the wildcard). The empty pointer, which would name
  the whole body, is refused. A numeric token matches an array index written without
  leading zeros, and an object key spelled the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from splitter.config.convert import (
    _TOKEN,
    Checker,
    Invalid,
    join_path,
    to_float,
    to_int,
    to_size,
)
from splitter.config.model import SHADOW_IGNORE_HEADERS, SHADOW_METHODS, Shadow
from splitter.errors import ConfigError

__all__ = [
    "FRAMING_HEADERS",
    "MAX_IN_FLIGHT",
    "MAX_POINTERS",
    "MAX_POINTER_TOKENS",
    "MAX_SHADOW_BODY",
    "SHADOW_KEYS",
    "WILDCARD",
    "pointer_tokens",
    "saved_shadow",
    "shadow_change",
    "shadow_data",
    "shadow_section",
    "to_json_pointer",
]

SHADOW_KEYS = (
    "pool", "share", "reference", "methods", "max_body", "max_in_flight", "ignore_headers",
    "ignore_json",
)  # fmt: skip
MAX_SHADOW_BODY = 16 << 20
MAX_IN_FLIGHT = 10_000
MAX_POINTERS = 100
MAX_POINTER_TOKENS = 64  # splitter.shadow.compare compares JSON to this depth, no deeper
WILDCARD = "*"

# Headers that frame a message or describe one connection (content-length, and the
# hop-by-hop headers of RFC 9110 7.6.1: http1.request.HOP_BY_HOP, which the config may not
# import): they differ with how an answer was sent, not with what it says.
FRAMING_HEADERS = frozenset(
    {
        "content-length",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
_POINTER_HINT = "must be a JSON pointer such as /generated_at or /items/*/updated_at"
_POINTERS = "JSON pointers such as /generated_at"
_TOKEN_CHARS = "letters, digits and !#$%&'*+-.^_`|~"


def pointer_tokens(pointer: str) -> tuple[str, ...]:
    """The unescaped tokens of a JSON pointer ("/a~1b/*" -> ("a/b", "*")); ValueError
    when it is not one (no leading "/", or a "~" not followed by 0 or 1)."""
    if not pointer.startswith("/"):
        raise ValueError("a JSON pointer starts with '/'")
    tokens = []
    for raw in pointer[1:].split("/"):
        if "~" in raw.replace("~0", "").replace("~1", ""):
            raise ValueError("'~' must be followed by 0 (for ~) or 1 (for /)")
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tuple(tokens)


def to_json_pointer(value: Any) -> str:
    """One `ignore_json` entry, as written."""
    if not isinstance(value, str):
        raise Invalid(f"{_POINTER_HINT} (a string)")
    if value == "":
        raise Invalid(f"{_POINTER_HINT}: the empty pointer would ignore the whole body")
    try:
        tokens = pointer_tokens(value)
    except ValueError as e:
        raise Invalid(f"{_POINTER_HINT}: {e}") from None
    if len(tokens) > MAX_POINTER_TOKENS:
        raise Invalid(
            f"has {len(tokens)} tokens: JSON is compared {MAX_POINTER_TOKENS} levels deep, "
            "no deeper, so it could never match"
        )
    return value


def _method(value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise Invalid(f"must be a method name of {_TOKEN_CHARS}, such as GET")
    method = value.upper()
    if method == "CONNECT":
        raise Invalid("CONNECT opens a tunnel: there is no answer to compare")
    return method


def _header_name(value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise Invalid(f"must be a header name of {_TOKEN_CHARS}")
    name = value.lower()
    if name == "content-type":
        raise Invalid("content-type is always compared: it says how the body is compared")
    if name in FRAMING_HEADERS:
        raise Invalid(f"{name} is never compared (it says how an answer was sent): leave it out")
    return name


def _share(value: Any) -> float:
    share = to_float(value, "a number from 0 to 1")
    if not 0 <= share <= 1:
        raise Invalid("must be from 0 to 1")
    return share + 0.0  # -0.0 becomes 0.0


def _max_body(value: Any) -> int:
    size = to_size(value)
    if size > MAX_SHADOW_BODY:
        raise Invalid(
            "must be at most 16MiB: each body compared is held in memory, max_in_flight at once"
        )
    return size


def _max_in_flight(value: Any) -> int:
    n = to_int(value, 1)
    if n > MAX_IN_FLIGHT:
        raise Invalid(f"must be at most {MAX_IN_FLIGHT}")
    return n


def _list(
    ck: Checker,
    m: dict[Any, Any],
    path: str,
    key: str,
    convert: Callable[[Any], str],
    what: str,
    default: tuple[str, ...],
) -> tuple[str, ...]:
    """m[key], a list of names, each converted, in order (the default when absent); a
    duplicate after conversion is a problem at its index. `methods` must not be empty."""
    value = m.get(key)
    if value is None:
        return default
    list_path = join_path(path, key)
    if not isinstance(value, list) or (not value and key == "methods"):
        ck.add(list_path, f"must be a {'non-empty ' if key == 'methods' else ''}list of {what}")
        return default
    out: dict[str, int] = {}
    for i, item in enumerate(value):
        try:
            name = convert(item)
        except Invalid as e:
            ck.add(f"{list_path}[{i}]", str(e))
            continue
        if name in out:
            ck.add(f"{list_path}[{i}]", f"duplicate: {name} (same as {list_path}[{out[name]}])")
            continue
        out[name] = i
    return tuple(out)


def shadow_section(
    ck: Checker,
    value: Any,
    path: str,
    weights: Mapping[str, float | None] | None,
    pools_of: str,
) -> Shadow | None:
    """A `shadow` section at `path` ("shadow", "routes[1].shadow"); None when absent or
    unusable (every problem reported to `ck`).

    `weights` are the route's pools as written, each with its weight, None for a weight
    that could not be read (then "the only pool with a weight" is not judged); `weights`
    is None when the route's `pools` could not be read (then no pool name is judged).
    `pools_of` names them in an error ("the pools of route 'shop'")."""
    if value is None:
        return None
    m = ck.mapping(value, path, SHADOW_KEYS)
    if m is None:
        return None
    ok = True
    pool = m.get("pool")
    pool_path = join_path(path, "pool")
    if pool is None:
        ck.add(pool_path, "is required: the pool that gets the copies")
        ok = False
    elif not _known_pool(ck, pool, pool_path, weights, pools_of):
        ok = False
    elif weights is not None and None not in weights.values():
        weighted = [name for name, w in weights.items() if w is not None and w > 0]
        if weighted == [pool]:
            ck.add(
                pool_path,
                f"{pool} is the only pool with a weight above 0: every request goes to it, "
                "so none would be copied (shadow a pool at weight 0)",
            )
            ok = False
    if m.get("share") is None:
        ck.add(join_path(path, "share"), "is required: the share of requests copied, 0 to 1")
        ok = False
    share = ck.get(m, path, "share", 0.0, _share)
    reference = m.get("reference")
    reference_path = join_path(path, "reference")
    if reference is not None:
        if not _known_pool(ck, reference, reference_path, weights, pools_of):
            reference = None
        elif reference == pool:
            ck.add(
                reference_path,
                "must be another pool than pool: the reference is a second copy of the "
                "primary's version",
            )
            reference = None
    defaults = Shadow(pool="", share=0.0)
    methods = _list(ck, m, path, "methods", _method, "methods such as GET", SHADOW_METHODS)
    ignore_headers = _list(
        ck, m, path, "ignore_headers", _header_name, "header names", SHADOW_IGNORE_HEADERS
    )
    ignore_json: tuple[str, ...] = ()
    raw = m.get("ignore_json")
    if isinstance(raw, list) and len(raw) > MAX_POINTERS:
        ck.add(join_path(path, "ignore_json"), f"must list at most {MAX_POINTERS} JSON pointers")
    else:
        ignore_json = _list(ck, m, path, "ignore_json", to_json_pointer, _POINTERS, ())
    shadow = Shadow(
        pool=str(pool),
        share=share,
        reference=None if reference is None else str(reference),
        methods=methods,
        max_body=ck.get(m, path, "max_body", defaults.max_body, _max_body),
        max_in_flight=ck.get(m, path, "max_in_flight", defaults.max_in_flight, _max_in_flight),
        ignore_headers=ignore_headers,
        ignore_json=ignore_json,
    )
    return shadow if ok else None


def _known_pool(
    ck: Checker, name: Any, path: str, weights: Mapping[str, float | None] | None, pools_of: str
) -> bool:
    if not isinstance(name, str):
        ck.add(path, "must be a pool name")
        return False
    if weights is not None and name not in weights:
        known = ", ".join(weights) or "none"
        ck.add(path, f"unknown pool {name!r} ({pools_of} are {known})")
        return False
    return True


CHANGE_KEYS = ("pool", "share", "reference")


def shadow_data(shadow: Shadow) -> dict[str, Any]:
    """A shadow section as plain data (the keys of the YAML section), for the shared
    document and for `shadow_change`."""
    return {
        "pool": shadow.pool,
        "share": shadow.share,
        "reference": shadow.reference,
        "methods": list(shadow.methods),
        "max_body": shadow.max_body,
        "max_in_flight": shadow.max_in_flight,
        "ignore_headers": list(shadow.ignore_headers),
        "ignore_json": list(shadow.ignore_json),
    }


def shadow_change(
    base: Shadow | None, change: Mapping[str, Any], weights: Mapping[str, float | None]
) -> Shadow:
    """The shadow a runtime change makes (PUT /api/v1/shadow: `pool`, `share`,
    `reference`), on top of `base` (the one in force, else the file's; None: the
    defaults): ConfigError naming each problem as the config's own checks would."""
    ck = Checker(None)
    unknown = [str(k) for k in change if k not in CHANGE_KEYS]
    if unknown:
        ck.add(unknown[0], f"is not a key of a shadow change ({', '.join(CHANGE_KEYS)})")
        raise ConfigError(ck.problems)
    data: dict[str, Any] = shadow_data(base) if base is not None else {}
    if "pool" in change and base is not None and change["pool"] != base.pool:
        data.pop("reference", None)  # a reference goes with the pool it was set for
    data.update(change)
    if data.get("reference") is None:
        data.pop("reference", None)
    shadow = shadow_section(ck, data, "", weights, "the pools")
    if ck.problems or shadow is None:
        raise ConfigError(ck.problems)
    return shadow


def saved_shadow(value: Any, weights: Mapping[str, float | None]) -> Shadow | None:
    """A shadow read back from the shared document or the state file (`shadow_data`),
    checked like any input: None when it is not a valid section for these pools."""
    if not isinstance(value, dict):
        return None
    ck = Checker(None)
    shadow = shadow_section(ck, value, "", weights, "the pools")
    return None if ck.problems else shadow
