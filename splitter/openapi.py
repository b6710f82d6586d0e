"""The OpenAPI 3 description of the admin API, served at `GET /api/v1/openapi.json`."""

from __future__ import annotations

from typing import Any

from splitter import __version__
from splitter.config import MAX_WEIGHT

_ERROR = {"$ref": "#/components/schemas/Error"}
_WEIGHTS = {"$ref": "#/components/schemas/Weights"}
_WEIGHT = {"type": "number", "minimum": 0, "maximum": MAX_WEIGHT}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_FORBIDDEN = _json(_ERROR, "Without a token, a Host that is not loopback.")


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "The body is not a JSON object of the right shape (weights: 0 to 1,000,000).",
        401: "A bearer token is required and was missing or wrong.",
        403: "Without a token, a Host that is not loopback; a change from another Origin.",
        404: "Unknown pool.",
        405: "Method not allowed.",
        409: "Every weight would be 0.",
        413: "Body over 64 KiB.",
        422: "The config file is invalid; the old config is kept.",
    }
    return {str(code): _json(_ERROR, text[code]) for code in (401, 403, *codes)}


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "splitter admin API",
        "version": __version__,
        "description": "Weights, pools, reloads and events of a running splitter.",
    },
    "paths": {
        "/api/v1/weights": {
            "get": {
                "summary": "The weights in force",
                "operationId": "getWeights",
                "responses": {"200": _json(_WEIGHTS, "Pool name to weight."), **_errors()},
            },
            "put": {
                "summary": "Set the named pools' weights; the others keep theirs",
                "operationId": "putWeights",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _WEIGHTS}},
                },
                "responses": {
                    "200": _json(_WEIGHTS, "The full new map."),
                    **_errors(400, 404, 409, 413),
                },
            },
        },
        "/api/v1/switch": {
            "post": {
                "summary": "Blue/green flip: the named pool 100, all others 0",
                "operationId": "switch",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["pool"],
                                "properties": {"pool": {"type": "string"}},
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["weights", "previous"],
                            "properties": {"weights": _WEIGHTS, "previous": _WEIGHTS},
                        },
                        "The new and the previous weights.",
                    ),
                    **_errors(400, 404, 413),
                },
            },
        },
        "/api/v1/pools": {
            "get": {
                "summary": "Pools with their weights and backends",
                "operationId": "getPools",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "additionalProperties": {"$ref": "#/components/schemas/Pool"},
                        },
                        "Pool name to pool.",
                    ),
                    **_errors(),
                },
            }
        },
        "/api/v1/reload": {
            "post": {
                "summary": "Re-read the config file",
                "operationId": "reload",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["status", "weights"],
                            "properties": {"status": {"type": "string"}, "weights": _WEIGHTS},
                        },
                        "The new config is in force.",
                    ),
                    **_errors(422),
                },
            }
        },
        "/api/v1/events": {
            "get": {
                "summary": "The latest changes, oldest first",
                "operationId": "getEvents",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["events"],
                            "properties": {
                                "events": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Event"},
                                }
                            },
                        },
                        "Events.",
                    ),
                    **_errors(),
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This description",
                "operationId": "getOpenapi",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3."), **_errors()},
            }
        },
        "/healthz": {
            "get": {
                "summary": "200 while the process runs",
                "operationId": "healthz",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "Alive."), "403": _FORBIDDEN},
            }
        },
        "/readyz": {
            "get": {
                "summary": "200 when a pool with weight > 0 has a healthy backend",
                "operationId": "readyz",
                "security": [],
                "responses": {
                    "200": _json({"type": "object"}, "Ready."),
                    "503": _json({"type": "object"}, "Not ready (or shutting down)."),
                    "403": _FORBIDDEN,
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "403": _FORBIDDEN,
                },
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Weights": {
                "type": "object",
                "additionalProperties": _WEIGHT,
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            },
            "Pool": {
                "type": "object",
                "required": ["weight", "backends"],
                "properties": {
                    "weight": _WEIGHT,
                    "backends": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["url", "weight", "up"],
                            "properties": {
                                "url": {"type": "string"},
                                "weight": _WEIGHT,
                                "up": {"type": "boolean"},
                            },
                        },
                    },
                },
            },
            "Event": {
                "type": "object",
                "required": ["time", "source", "what", "old", "new"],
                "properties": {
                    "time": {"type": "string"},
                    "source": {"type": "string", "enum": ["api", "file", "signal", "startup"]},
                    "what": {"type": "string"},
                    "old": _WEIGHTS,
                    "new": _WEIGHTS,
                },
            },
        },
    },
    "security": [{"bearer": []}],
}
