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
        429: "10 wrong tokens from this client address within a minute: its token checks "
        "are refused for a minute (see Retry-After); other addresses are not affected.",
        503: "The shared store (store.url) cannot be reached: nothing was changed.",
    }
    return {str(code): _json(_ERROR, text[code]) for code in (401, 403, 429, *codes)}


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


# -- rollouts (docs/rollouts.md) ----------------------------------------------------------

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
# -- live statistics, the stream and the dashboard's session (docs/admin-api.md) ----------

_NULLABLE_NUMBER = {"type": "number", "nullable": True}
_SECONDS_PARAM = {"type": "integer", "minimum": 1, "maximum": 300}

_LIVE_PATHS: dict[str, Any] = {
    "/api/v1/stats": {
        "get": {
            "summary": "Per pool over the last `window` complete seconds",
            "description": (
                "`share` is the pool's part of the requests answered by a pool (null when "
                "there were none); requests refused before a pool was chosen are under "
                '"none" (listed when there are any, not in the shares). `rps` divides by '
                "the window, or by the uptime when the process is younger. Quantiles are "
                "null without requests."
            ),
            "operationId": "getStats",
            "parameters": [
                {"name": "window", "in": "query", "required": False, "schema": _SECONDS_PARAM}
            ],
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Stats"}, "Statistics."),
                **_errors(400),
            },
        }
    },
    "/api/v1/stats/series": {
        "get": {
            "summary": "Per pool and second: requests and errors over the last `seconds`",
            "operationId": "getStatsSeries",
            "parameters": [
                {"name": "seconds", "in": "query", "required": False, "schema": _SECONDS_PARAM}
            ],
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Series"}, "Series."),
                **_errors(400),
            },
        }
    },
    "/api/v1/stream": {
        "get": {
            "summary": "Server-sent events: stats, series, weights, event, rollout",
            "description": (
                "`stats` every second (the body of /api/v1/stats?window=10), `series` every "
                "second (the last 5 seconds, as /api/v1/stats/series), `weights` at once and "
                "on every change, `event` for every new entry of /api/v1/events, `rollout` "
                "on every rollout transition. A comment line after 10 s of silence. A "
                "client that reads too slowly is dropped. `kinds` (comma-separated) keeps "
                "only those kinds."
            ),
            "operationId": "getStream",
            "parameters": [
                {"name": "kinds", "in": "query", "required": False, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {
                    "description": "The stream.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "503": _json(_ERROR, "Too many stream clients at once (100)."),
                **_errors(400),
            },
        }
    },
    "/api/v1/session": {
        "get": {
            "summary": "Whether a token is required, and the session of this request",
            "operationId": "getSession",
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Session"}, "Session."),
                **_errors(),
            },
        },
        "post": {
            "summary": "Trade the admin token for a session cookie (splitter_admin, 12 h)",
            "description": (
                "Needs no bearer token. Answers 204 with the cookie (HttpOnly, "
                "SameSite=Strict, Path=/); calls made with it that change something need "
                "`X-Requested-With: splitter`. 400 when admin.token is not set; 429 after "
                "too many wrong tokens."
            ),
            "operationId": "postSession",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["token"],
                            "properties": {"token": {"type": "string"}},
                            "additionalProperties": False,
                        }
                    }
                },
            },
            "responses": {
                "204": {"description": "Signed in: the cookie is set."},
                **_errors(400, 413),
            },
        },
        "delete": {
            "summary": "End the session of the cookie sent",
            "operationId": "deleteSession",
            "security": [],
            "responses": {"204": {"description": "Signed out."}, **_errors()},
        },
    },
}

_POOL_STATS = {
    "type": "object",
    "required": ["requests", "rps", "error_rate", "p50_ms", "p95_ms", "p99_ms"],
    "properties": {
        "weight": _WEIGHT,
        "share": _NULLABLE_NUMBER,
        "requests": {"type": "integer", "minimum": 0},
        "rps": {"type": "number", "minimum": 0},
        "error_rate": _NULLABLE_NUMBER,
        "p50_ms": _NULLABLE_NUMBER,
        "p95_ms": _NULLABLE_NUMBER,
        "p99_ms": _NULLABLE_NUMBER,
        "backends_up": {"type": "integer", "minimum": 0},
        "backends": {"type": "integer", "minimum": 0},
    },
}

_LIVE_SCHEMAS: dict[str, Any] = {
    "PoolStats": _POOL_STATS,
    "Stats": {
        "type": "object",
        "required": ["at", "window", "pools"],
        "properties": {
            "at": {"type": "string", "format": "date-time"},
            "window": {"type": "integer"},
            "pools": {
                "type": "object",
                "additionalProperties": {"$ref": "#/components/schemas/PoolStats"},
            },
            "replicas": {
                "type": "integer",
                "minimum": 1,
                "description": "With a shared store: the live replicas whose requests are counted.",
            },
        },
    },
    "Series": {
        "type": "object",
        "required": ["at", "start", "seconds", "pools"],
        "properties": {
            "at": {"type": "string", "format": "date-time"},
            "start": {"type": "integer", "description": "Unix time of the first second."},
            "seconds": {"type": "integer"},
            "pools": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["requests", "errors"],
                    "properties": {
                        "requests": {"type": "array", "items": {"type": "integer"}},
                        "errors": {"type": "array", "items": {"type": "integer"}},
                    },
                },
            },
        },
    },
    "Session": {
        "type": "object",
        "required": ["token_required", "session", "expires_at"],
        "properties": {
            "token_required": {"type": "boolean"},
            "session": {"type": "boolean"},
            "expires_at": {"type": "string", "format": "date-time", "nullable": True},
        },
    },
}

OPENAPI["paths"].update(_LIVE_PATHS)
OPENAPI["components"]["schemas"].update(_LIVE_SCHEMAS)
