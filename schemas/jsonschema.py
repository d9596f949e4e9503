"""Generate the JSON Schema files in schemas/json/ from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.base import Message
from schemas.catalogue import CATALOGUE

JSON_DIR = Path(__file__).parent / "json"


def models() -> list[type[Message]]:
    """Every value model in the catalogue, once, in catalogue order."""
    seen: dict[str, type[Message]] = {}
    for spec in CATALOGUE:
        for model in spec.value_models:
            seen.setdefault(model.__name__, model)
    return list(seen.values())


def render(model: type[Message]) -> str:
    """The JSON Schema of one model, as the text checked into schemas/json/."""
    schema = model.model_json_schema(mode="serialization")
    schema["$id"] = f"https://gridhub.example/schemas/{model.__name__}.v{model.SCHEMA_VERSION}.json"
    return json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def path_for(model: type[Message]) -> Path:
    """Where the schema file of a model lives."""
    return JSON_DIR / f"{model.__name__}.v{model.SCHEMA_VERSION}.schema.json"


def stale_files() -> list[Path]:
    """Schema files that differ from what the models generate now (or are missing)."""
    return [p for m in models() if not (p := path_for(m)).exists() or p.read_text("utf-8") != render(m)]


def write_all() -> list[Path]:
    """Regenerate every schema file; return the paths written."""
    JSON_DIR.mkdir(exist_ok=True)
    written = []
    for model in models():
        path = path_for(model)
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    return written
