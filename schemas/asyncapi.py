"""An AsyncAPI 3.0 document of the hub's topics, generated from the catalogue and the message models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from schemas.catalogue import CATALOGUE, TopicSpec
from schemas.jsonschema import models

ASYNCAPI_PATH = Path(__file__).parent / "asyncapi.json"
REF = "#/components/schemas/{model}"


def _channel_id(spec: TopicSpec) -> str:
    return spec.name.replace(".", "-")


def _kafka_topic(spec: TopicSpec, prefix: str) -> dict[str, Any]:
    config: dict[str, Any] = {"cleanup.policy": [spec.cleanup_policy]}
    if spec.cleanup_policy == "delete":
        config["retention.ms"] = spec.retention_ms
    return {"kafka": {"topic": f"{prefix}{spec.name}", "partitions": spec.partitions, "topicConfiguration": config}}


def render_asyncapi(version: str, prefix: str = "gridhub.") -> str:
    """The AsyncAPI JSON: one channel per topic, its message, key, producers and consumers."""
    _, definitions = models_json_schema([(m, "serialization") for m in models()], ref_template=REF)
    schemas: dict[str, Any] = definitions["$defs"]
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in CATALOGUE:
        names = [m.__name__ for m in spec.value_models]
        for value_model in spec.value_models:
            messages[value_model.__name__] = {
                "name": value_model.__name__,
                "title": value_model.__name__,
                "summary": (value_model.__doc__ or "").strip(),
                "contentType": "application/json",
                "payload": {"$ref": REF.format(model=value_model.__name__)},
            }
        model = " / ".join(names)
        channel = _channel_id(spec)
        channels[channel] = {
            "address": f"{prefix}{spec.name}",
            "description": spec.description,
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
            "bindings": _kafka_topic(spec, prefix),
        }
        key_binding = {"kafka": {"key": {"type": "string", "description": f"Kafka key: {spec.key}"}}}
        for action, services in (("send", spec.producers), ("receive", spec.consumers)):
            for service in services:
                operations[f"{service}-{action}s-{channel}"] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{channel}"},
                    "summary": f"{service} {action}s {model} on {spec.name}",
                    "bindings": key_binding,
                }
    document = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "GridHub topics",
            "version": version,
            "description": "Kafka topics of the GridHub bus. Addresses carry the deployment prefix "
            f"(GRIDHUB_TOPIC_PREFIX, here {prefix!r}); every message has schema_version, message_id and causation_id.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
