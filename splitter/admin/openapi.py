"""The OpenAPI 3 description of the admin API (`GET /api/v1/openapi.json`), generated.

`document(routes)` walks the route table (`admin.routes.ROUTES`): each route gives its
path, method, words, query, request and response body types and the error statuses it
can answer; `admin.schema` turns the types (`admin.bodies`) into component schemas. What
every route shares is added here, once:

- 403 on every route (the Host and Origin rule runs before anything else);
- 401 and 429 on every route that needs the token (`auth`), which also carries the
  document's bearer security; the others say `security: []`;
- 413 on every route that takes a body;
- every error answers the `Error` body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from splitter import __version__
from splitter.admin.bodies import Error
from splitter.admin.schema import JSON, Components

ERROR_WORDS: dict[int, str] = {
    400: "The request is not of the right shape.",
    401: "A bearer token is required and was missing or wrong.",
    403: "Without a token, a Host that is not loopback; a change from another Origin.",
    404: "Not found.",
    409: "The change conflicts with the state.",
    413: "Body over 64 KiB.",
    422: "The config file is invalid; the old config is kept.",
    429: "10 wrong tokens from this client address within a minute: its token checks "
    "are refused for a minute (see Retry-After); other addresses are not affected.",
    503: "The shared store (store.url) cannot be reached: nothing was changed.",
}


@dataclass(frozen=True, slots=True)
class Text:
    """A response body that is not JSON: its content type (the schema is a string)."""

    content_type: str


class Described(Protocol):
    """What the document needs of a route (`admin.routes.Route` is one)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def operation_id(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def tag(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def query(self) -> Any: ...  # a TypedDict of the query parameters, or None
    @property
    def request(self) -> Any: ...  # the request body's type, or None
    @property
    def request_required(self) -> bool: ...
    @property
    def status(self) -> int: ...
    @property
    def response(self) -> Any: ...  # the response body's type, a Text, or None (no body)
    @property
    def response_words(self) -> str: ...
    @property
    def errors(self) -> Mapping[int, str]: ...  # status -> when (answered as Error)
    @property
    def also(self) -> Mapping[int, tuple[Any, str]]: ...  # other answers: (body, words)
    @property
    def auth(self) -> bool: ...
    @property
    def documented(self) -> bool: ...


def _content(components: Components, body: Any) -> JSON:
    if isinstance(body, Text):
        return {body.content_type: {"schema": {"type": "string"}}}
    return {"application/json": {"schema": components.schema(body)}}


def _answer(components: Components, body: Any, words: str) -> JSON:
    out: JSON = {"description": words}
    if body is not None:
        out["content"] = _content(components, body)
    return out


def error_statuses(route: Described) -> dict[int, str]:
    """Every error status a route can answer, with its words (shared ones included)."""
    out = {403: ERROR_WORDS[403]}
    if route.auth:
        out[401] = ERROR_WORDS[401]
        out[429] = ERROR_WORDS[429]
    if route.request is not None:
        out[413] = ERROR_WORDS[413]
    out.update(route.errors)
    return out


def operation(components: Components, route: Described) -> JSON:
    op: JSON = {"summary": route.summary, "operationId": route.operation_id, "tags": [route.tag]}
    if route.description:
        op["description"] = route.description
    if not route.auth:
        op["security"] = []
    parameters: list[JSON] = []
    if "{route}" in route.path:
        parameters.append({
            "name": "route", "in": "path", "required": True, "description": "A route's name.",
            "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,39}$"},
        })  # fmt: skip
    if route.query is not None:
        properties, required = components.fields(route.query)
        parameters += [
            {"name": key, "in": "query", "required": key in required, "schema": schema}
            for key, schema in properties.items()
        ]
    if parameters:
        op["parameters"] = parameters
    if route.request is not None:
        op["requestBody"] = {
            "required": route.request_required,
            "content": {"application/json": {"schema": components.schema(route.request, True)}},
        }
    responses = {str(route.status): _answer(components, route.response, route.response_words)}
    for status, (body, words) in route.also.items():
        responses[str(status)] = _answer(components, body, words)
    for status, words in sorted(error_statuses(route).items()):
        responses[str(status)] = _answer(components, Error, words)
    op["responses"] = responses
    return op


def document(routes: Sequence[Described]) -> JSON:
    """The OpenAPI document of `routes` (those `documented`), in their order."""
    components = Components()
    paths: dict[str, JSON] = {}
    for route in routes:
        if route.documented:
            paths.setdefault(route.path, {})[route.method.lower()] = operation(components, route)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "splitter admin API",
            "version": __version__,
            "description": "Weights, pools, reloads, events, rollouts and live statistics "
            "of a running splitter.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": dict(sorted(components.schemas.items())),
        },
        "security": [{"bearer": []}],
    }
