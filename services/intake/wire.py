"""A model's own JSON serialisation applied to plain dicts: wire bytes without building (validating) the model.

`dict_serializer(Model)` turns the model's core schema into the same schema over dicts (every model becomes a typed
dict with the same fields, field schemas and config), so the field serialisers are the model's own: same strings,
floats, times and enums. The dict must hold every field in the model's order, defaults included, with values of the
model's types; tests hold the bytes equal to `Model.model_validate(d).to_bytes()`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import SchemaSerializer

# What a typed-dict field keeps of a model field (the rest only matters to validation).
_FIELD_KEYS = ("schema", "serialization_alias", "serialization_exclude", "serialization_exclude_if", "metadata")


def _over_dicts(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_over_dicts(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    if kind == "model":
        if schema.get("root_model") or "serialization" in schema:
            raise ValueError(f"{schema.get('cls')!r}: custom serialisation, not a plain field-by-field model")
        fields = schema["schema"]
        if fields.get("type") != "model-fields" or fields.get("computed_fields"):
            raise ValueError(f"{schema.get('cls')!r}: not plain model fields")
        typed: dict[str, Any] = {
            "type": "typed-dict",
            "fields": {
                name: {"type": "typed-dict-field", **{k: _over_dicts(v) for k, v in f.items() if k in _FIELD_KEYS}}
                for name, f in fields["fields"].items()
            },
        }
        for key in ("extra_behavior", "extras_schema"):
            if key in fields:
                typed[key] = _over_dicts(fields[key])
        for key in ("config", "ref"):
            if key in schema:
                typed[key] = schema[key]
        return typed
    if schema.get("is_field_serializer"):
        raise ValueError("a field serialiser takes the model instance: not applicable to dicts")
    return {key: _over_dicts(value) for key, value in schema.items()}


def dict_serializer(model: type[BaseModel]) -> SchemaSerializer:
    """A serialiser of dicts shaped like `model` (nested models as dicts too) that writes what the model writes."""
    return SchemaSerializer(_over_dicts(model.__pydantic_core_schema__))
