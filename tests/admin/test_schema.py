"""splitter/admin/schema.py: Python types to OpenAPI 3.0 schemas, and the admin API's
bodies (admin/bodies.py) held to the server: the rollout start request's schema takes and
refuses what `parse_rollout` takes and refuses, and what the server answers fits the
response schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import jsonschema
import pytest

from splitter.admin import bodies
from splitter.admin.dashboard import Dashboard
from splitter.admin.routes import OPENAPI
from splitter.admin.schema import Components, Meta
from splitter.config import MAX_DURATION, MAX_WEIGHT, Rollouts
from splitter.errors import ConfigError
from splitter.rollout.plan import parse_rollout
from splitter.rollout.record import Rollout
from splitter.rollout.shadowstep import ShadowCounts
from tests.admin.test_dashboard import make_host

# -- the helper -------------------------------------------------------------------------


class Inner(TypedDict):
    """An inner
    object."""

    n: Annotated[int, Meta(minimum=1, maximum=9)]


class Outer(TypedDict):
    name: str
    inner: Inner
    kind: NotRequired[Literal["a", "b"]]
    maybe: float | None
    tags: list[str]
    counts: dict[str, int]
    either: str | Inner


def test_scalars_literals_containers_and_nullable() -> None:
    c = Components()
    assert c.schema(str) == {"type": "string"}
    assert c.schema(bool) == {"type": "boolean"}
    assert c.schema(object) == {}
    assert c.schema(Literal["x", "y"]) == {"type": "string", "enum": ["x", "y"]}
    assert c.schema(Literal[True]) == {"type": "boolean", "enum": [True]}
    assert c.schema(tuple[int, ...]) == {"type": "array", "items": {"type": "integer"}}
    assert c.schema(dict[str, float]) == {
        "type": "object",
        "additionalProperties": {"type": "number"},
    }
    assert c.schema(int | None) == {"type": "integer", "nullable": True}
    assert c.schema(Inner | None) == {
        "allOf": [{"$ref": "#/components/schemas/Inner"}],
        "nullable": True,
    }
    bounded = Annotated[float, Meta(minimum=0, exclusive_minimum=True, maximum=5, min_length=None)]
    assert c.schema(bounded) == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 5,
    }


def test_a_typeddict_is_a_component_with_its_required_keys() -> None:
    c = Components()
    assert c.schema(Outer) == {"$ref": "#/components/schemas/Outer"}
    outer = c.schemas["Outer"]
    assert outer["required"] == ["name", "inner", "maybe", "tags", "counts", "either"]
    assert "additionalProperties" not in outer  # an answer may grow
    assert outer["properties"]["either"] == {
        "anyOf": [{"type": "string"}, {"$ref": "#/components/schemas/Inner"}]
    }
    assert c.schemas["Inner"] == {
        "type": "object",
        "description": "An inner object.",
        "required": ["n"],
        "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9}},
    }


def test_a_body_taken_is_closed_and_one_class_cannot_be_both() -> None:
    c = Components()
    c.schema(Inner, closed=True)
    assert c.schemas["Inner"]["additionalProperties"] is False
    with pytest.raises(TypeError, match="two schemas"):
        c.schema(Inner)


@pytest.mark.parametrize("tp", [bytes, dict[int, str], Literal["a", 1], tuple[int, str]])
def test_types_without_a_json_schema_are_refused(tp: Any) -> None:
    with pytest.raises(TypeError):
        Components().schema(tp)


# -- validating against the document ----------------------------------------------------


def draft4(schema: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema draft 4 (only `nullable` differs here)."""
    if isinstance(schema, list):
        return [draft4(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: draft4(v) if k != "enum" else v for k, v in schema.items() if k != "nullable"}
    if schema.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    components = draft4(OPENAPI["components"]["schemas"])
    root = {"allOf": [draft4(schema)], "components": {"schemas": components}}
    return jsonschema.Draft4Validator(root)


def body_schema(path: str, method: str, status: str | None = None) -> dict[str, Any]:
    op = OPENAPI["paths"][path][method]
    if status is None:
        return dict(op["requestBody"]["content"]["application/json"]["schema"])
    return dict(op["responses"][status]["content"]["application/json"]["schema"])


def test_the_bounds_are_the_validations_constants() -> None:
    weights = body_schema("/api/v1/weights", "put")
    assert weights["additionalProperties"]["maximum"] == MAX_WEIGHT
    assert weights["minProperties"] == 1
    hold = OPENAPI["components"]["schemas"]["WeightStep"]["properties"]["hold"]
    assert hold["anyOf"][1]["maximum"] == MAX_DURATION


START_TAKEN: list[Any] = [
    {"pool": "canary"},
    {
        "pool": "canary",
        "strategy": "canary",
        "steps": [{"weight": 5, "hold": "1m", "max": "10m"}, {"pause": True},
                  {"weight": 25}, {"weight": 50}, {"weight": 100}],
        "analysis": {"min_error_rate": 0.01},
        "on_inconclusive": "pause",
        "webhooks": [{"url": "http://127.0.0.1:7000/hook", "events": ["rolled_back"]}],
        "gates": [{"url": "http://127.0.0.1:7000/gate"}],
    },  # the contract's example
    {"pool": "canary", "steps": [1, 2.5, 100], "analysis": None, "webhooks": None},
    {"pool": "canary", "steps": [{"weight": 5, "hold": 0, "max": 30, }]},
    {"pool": "green", "strategy": "bluegreen", "preview": {"hold": "1m", "max": "10m"},
     "auto_promote": False, "keep": "10m"},
    {"pool": "green", "strategy": "bluegreen", "keep": 0, "analysis": {"confidence": 0.95}},
    {"pool": "canary", "steps": [50], "analysis": {"warmup": "250ms", "latency_floor": 0}},
    {"pool": "canary", "steps": [{"shadow": {"share": 0.1, "hold": "2m", "max": "10m",
                                             "max_diff_rate": 0.01}}, 5, 25, 50, 100]},
    {"pool": "canary", "steps": [{"shadow": {}}, 100]},
    {"pool": "canary", "steps": [{"shadow": {"share": 1, "max_diff_rate": 0, "hold": None}}, 50]},
]  # fmt: skip
START_REFUSED: list[Any] = [
    [],
    {},
    {"pool": ""},
    {"pool": 7},
    {"pool": "canary", "strategy": "linear"},
    {"pool": "canary", "strategy": None},
    {"pool": "canary", "color": "blue"},
    {"pool": "canary", "steps": []},
    {"pool": "canary", "steps": [0]},
    {"pool": "canary", "steps": [101]},
    {"pool": "canary", "steps": ["5"]},
    {"pool": "canary", "steps": [True]},
    {"pool": "canary", "steps": [{"pause": False}]},
    {"pool": "canary", "steps": [{"pause": True, "weight": 5}]},
    {"pool": "canary", "steps": [{"hold": "1m"}]},
    {"pool": "canary", "steps": [{"weight": 5, "hold": "soon"}]},
    {"pool": "canary", "steps": [{"weight": 5, "max": 0}]},
    {"pool": "canary", "steps": [{"weight": 5, "hold": MAX_DURATION + 1}]},
    {"pool": "canary", "keep": "10m"},
    {"pool": "canary", "preview": {"hold": "1m"}},
    {"pool": "canary", "on_inconclusive": "wait"},
    {"pool": "canary", "analysis": {"max_per_address": 5}},
    {"pool": "canary", "analysis": {"confidence": 1}},
    {"pool": "canary", "analysis": {"max_error_ratio": 0.5}},
    {"pool": "canary", "webhooks": [{"url": "ftp://x"}]},
    {"pool": "canary", "webhooks": [{"url": "http://x", "events": ["exploded"]}]},
    {"pool": "canary", "gates": [{}]},
    {"pool": "canary", "gates": [{"url": "http://x", "timeout": 1}]},
    {"pool": "green", "strategy": "bluegreen", "steps": [5]},
    {"pool": "green", "strategy": "bluegreen", "auto_promote": "yes"},
    {"pool": "green", "strategy": "bluegreen", "preview": {"hold": "1m", "wait": "1m"}},
    {"pool": "canary", "steps": [{"shadow": {"share": 0}}, 5]},
    {"pool": "canary", "steps": [{"shadow": {"share": 1.01}}, 5]},
    {"pool": "canary", "steps": [{"shadow": {"share": "10%"}}, 5]},
    {"pool": "canary", "steps": [{"shadow": {"max_diff_rate": 1}}, 5]},
    {"pool": "canary", "steps": [{"shadow": {"ratio": 1}}, 5]},
    {"pool": "canary", "steps": [{"shadow": 0.1}, 5]},
    {"pool": "canary", "steps": [{"shadow": {}, "weight": 5}, 10]},
    {"pool": "green", "strategy": "bluegreen", "steps": [{"shadow": {}}]},
]


def server_takes(body: Any) -> bool:
    try:
        parse_rollout(body, Rollouts())
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("body", START_TAKEN)
def test_a_start_body_the_server_takes_fits_the_schema(body: Any) -> None:
    assert server_takes(body)
    validator(body_schema("/api/v1/rollout", "post")).validate(body)


@pytest.mark.parametrize("body", START_REFUSED)
def test_a_start_body_the_server_refuses_the_schema_refuses(body: Any) -> None:
    assert not server_takes(body)
    assert not validator(body_schema("/api/v1/rollout", "post")).is_valid(body)


def test_what_the_schema_cannot_say_is_left_to_the_server() -> None:
    """Rising steps and max >= hold relate two values: the schema takes these, the
    server answers 400 (documented)."""
    check = validator(body_schema("/api/v1/rollout", "post"))
    for body in ({"pool": "c", "steps": [50, 25]}, {"pool": "c", "steps": [{"pause": True}]},
                 {"pool": "c", "steps": [{"weight": 5, "hold": "2m", "max": "1m"}]},
                 {"pool": "c", "steps": [5, {"shadow": {}}]},
                 {"pool": "c", "steps": [{"shadow": {}}]}):  # fmt: skip
        assert check.is_valid(body) and not server_takes(body)


def rollouts() -> list[Rollout]:
    canary = parse_rollout(
        {"pool": "canary", "steps": [{"weight": 2.5, "hold": "90s"}, {"pause": True}, 100]},
        Rollouts(),
    )
    green = parse_rollout({"pool": "green", "strategy": "bluegreen"}, Rollouts())
    shadow = parse_rollout({"pool": "canary", "steps": [{"shadow": {}}, 50]}, Rollouts())
    start = {"blue": 100.0, "canary": 0.0, "green": 0.0}
    return [
        Rollout("a1", canary, start, 1_800_000_000.5, weights={"blue": 97.5, "canary": 2.5},
                history=[{"at": "2027-01-15T08:00:00.500Z", "what": "started", "detail": ""}],
                needed=310),
        Rollout("b2", green, start, 1_800_000_000.0, status="rolled_back", verdict="fail",
                warmup_until=1_800_000_030.0),
        Rollout("c3", shadow, start, 1_800_000_000.0, weights=start,
                shadow=ShadowCounts(120, 1, 125, 0, 2), needed=900),
    ]  # fmt: skip


def test_the_rollout_object_fits_its_schema() -> None:
    for path, method, status in [
        ("/api/v1/rollout", "get", "200"),
        ("/api/v1/rollout", "post", "201"),
        ("/api/v1/rollout/promote", "post", "200"),
    ]:
        check = validator(body_schema(path, method, status))
        for rollout in rollouts():
            check.validate({**rollout.to_json(), "route": "default"})
    listing = {"rollouts": [{**r.to_json(), "route": "default"} for r in rollouts()]}
    validator(body_schema("/api/v1/rollouts", "get", "200")).validate(listing)


def test_the_statistics_fit_their_schemas(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    dashboard = Dashboard(host)  # type: ignore[arg-type]
    now = 1_800_000_100.0
    stats = dashboard.stats(host.main, 60, now)
    validator(body_schema("/api/v1/stats", "get", "200")).validate(stats)
    series = dashboard.series(host.main, int(now) - 10, int(now), now)
    validator(body_schema("/api/v1/stats/series", "get", "200")).validate(series)


def test_every_error_answer_is_the_error_body() -> None:
    for path, methods in OPENAPI["paths"].items():
        for method, op in methods.items():
            for status, answer in op["responses"].items():
                if int(status) >= 400 and (path, status) != ("/readyz", "503"):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, method)
    assert bodies.Error.__required_keys__ == {"error"}
