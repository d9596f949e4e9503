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
