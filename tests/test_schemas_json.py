"""The JSON Schema files in schemas/json/ are what the models generate now."""

from __future__ import annotations

import json

from schemas import CATALOGUE
from schemas.jsonschema import models, path_for, render, stale_files


def test_checked_in_json_schemas_are_fresh() -> None:
    stale = stale_files()
    assert not stale, f"run `make schemas` and commit: {[p.name for p in stale]}"


def test_every_topic_model_has_a_versioned_schema_file() -> None:
    for spec in CATALOGUE:
        schema = json.loads(path_for(spec.value_model).read_text("utf-8"))
        assert schema["title"] == spec.value_model.__name__
        assert {"schema_version", "message_id", "causation_id"} <= set(schema["properties"])


def test_stale_detection_notices_a_changed_model(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import schemas.jsonschema as js

    monkeypatch.setattr(js, "JSON_DIR", tmp_path)
    assert len(js.stale_files()) == len(models())
    js.write_all()
    assert js.stale_files() == []
    first = models()[0]
    path_for_first = tmp_path / path_for(first).name
    path_for_first.write_text(render(first).replace('"type": "object"', '"type": "array"', 1), encoding="utf-8")
    assert js.stale_files() == [path_for_first]


def test_checked_in_openapi_is_fresh() -> None:
    from services.adapters.openapi import OPENAPI_PATH, render_openapi

    assert OPENAPI_PATH.read_text("utf-8") == render_openapi(), "run `make schemas` and commit"
    document = json.loads(OPENAPI_PATH.read_text("utf-8"))
    assert {"/v1/12345/work-orders", "/v1/110/incidents", "/v1/tasks/{task_id}/updates"} <= set(document["paths"])
    assert "Problem" in document["components"]["schemas"]


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref" and isinstance(v, str)] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_checked_in_asyncapi_is_fresh_and_every_reference_resolves() -> None:
    from gridhub import __version__
    from schemas.asyncapi import ASYNCAPI_PATH, render_asyncapi

    text = ASYNCAPI_PATH.read_text("utf-8")
    assert text == render_asyncapi(__version__), "run `make schemas` and commit"
    document = json.loads(text)
    assert document["asyncapi"] == "3.0.0"
    assert {c["address"] for c in document["channels"].values()} == {f"gridhub.{s.name}" for s in CATALOGUE}
    for ref in _refs(document):
        node: object = document
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"unresolved {ref}"
            node = node[part]
    raw = document["channels"]["raw-12345"]
    assert raw["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == ["delete"]
    assert {op["action"] for op in document["operations"].values()} == {"send", "receive"}
