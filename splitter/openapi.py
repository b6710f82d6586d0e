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
        503: "The shared store (store.url) cannot be reached: nothing was changed.",
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
                    **_errors(400, 404, 409, 413, 503),
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
                    **_errors(400, 404, 413, 503),
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
                    "source": {
                        "type": "string",
                        "enum": ["api", "file", "signal", "startup", "rollout"],
                    },
                    "what": {"type": "string"},
                    "old": _WEIGHTS,
                    "new": _WEIGHTS,
                },
            },
        },
    },
    "security": [{"bearer": []}],
}


# -- rollouts (contract section 8) ----------------------------------------------------------

_ROLLOUT = {"$ref": "#/components/schemas/Rollout"}
_COUNTS = {
    "type": "object",
    "required": ["requests", "bad", "slow"],
    "properties": {k: {"type": "integer", "minimum": 0} for k in ("requests", "bad", "slow")},
}
_ROLLOUT_ERRORS = {
    "409": _json(_ERROR, "No rollout is active (or, for resume, it is not paused)."),
    **_errors(400, 413, 503),
}

OPENAPI["paths"].update(
    {
        "/api/v1/rollout": {
            "post": {
                "summary": "Start a rollout (canary or blue-green)",
                "operationId": "startRollout",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "201": _json(_ROLLOUT, "The rollout, started."),
                    "409": _json(
                        _ERROR,
                        "A rollout is active, or the candidate is the only pool with a weight > 0.",
                    ),
                    **_errors(400, 404, 413, 503),
                },
            },
            "get": {
                "summary": "The active rollout, else the last one",
                "operationId": "getRollout",
                "responses": {
                    "200": _json(_ROLLOUT, "The rollout."),
                    "404": _json(_ERROR, "No rollout has run."),
                    **_errors(),
                },
            },
        },
        **{
            f"/api/v1/rollout/{action}": {
                "post": {
                    "summary": summary,
                    "operationId": f"{action}Rollout",
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": schema}},
                    },
                    "responses": {
                        "200": _json(_ROLLOUT, "The rollout after the call."),
                        **_ROLLOUT_ERRORS,
                    },
                }
            }
            for action, summary, schema in (
                (
                    "pause",
                    "Pause the active rollout (the weights stay)",
                    {"type": "object", "additionalProperties": False},
                ),
                (
                    "resume",
                    "Resume a paused rollout",
                    {"type": "object", "additionalProperties": False},
                ),
                (
                    "promote",
                    "End the current step as passed; with full, promote at once",
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"full": {"type": "boolean"}},
                    },
                ),
                ("abort", "Roll back now", {"type": "object", "additionalProperties": False}),
            )
        },
        "/api/v1/rollouts": {
            "get": {
                "summary": "The last 20 rollouts, newest first",
                "operationId": "listRollouts",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["rollouts"],
                            "properties": {"rollouts": {"type": "array", "items": _ROLLOUT}},
                        },
                        "Rollouts.",
                    ),
                    **_errors(),
                },
            }
        },
    }
)

OPENAPI["components"]["schemas"]["Rollout"] = {
    "type": "object",
    "required": [
        "id",
        "pool",
        "strategy",
        "status",
        "reason",
        "step",
        "steps",
        "weights",
        "start_weights",
        "started_at",
        "updated_at",
        "step_started_at",
        "analysis",
        "history",
    ],
    "properties": {
        "id": {"type": "string"},
        "pool": {"type": "string"},
        "strategy": {"type": "string", "enum": ["canary", "bluegreen"]},
        "status": {
            "type": "string",
            "enum": ["progressing", "paused", "promoted", "rolled_back", "cancelled"],
        },
        "reason": {"type": "string"},
        "step": {"type": "integer", "minimum": 0},
        "steps": {"type": "array", "items": {"type": "object"}},
        "weights": _WEIGHTS,
        "start_weights": _WEIGHTS,
        "started_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "step_started_at": {"type": "string"},
        "analysis": {
            "type": "object",
            "required": ["verdict", "candidate", "baseline", "needed_requests"],
            "properties": {
                "verdict": {"type": "string", "enum": ["pending", "pass", "fail", "inconclusive"]},
                "candidate": _COUNTS,
                "baseline": _COUNTS,
                "needed_requests": {"type": "integer", "minimum": 0, "nullable": True},
            },
        },
        "history": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["at", "what", "detail"],
                "properties": {k: {"type": "string"} for k in ("at", "what", "detail")},
            },
        },
    },
}
