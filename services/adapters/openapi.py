"""The adapters' OpenAPI document as checked into services/adapters/openapi.json."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry

from gridhub.kernel.settings import CommonSettings
from services.adapters.api import create_api
from services.adapters.settings import AdaptersSettings

OPENAPI_PATH = Path(__file__).parent / "openapi.json"


def render_openapi() -> str:
    """The OpenAPI JSON of the adapters, independent of local settings and secrets."""

    async def no_publisher() -> None:  # the document never starts the app
        return None

    settings = AdaptersSettings(common=CommonSettings(mode="dev"), source_keys={}, unit_keys={}, duty_list=None)
    app = create_api(settings, CollectorRegistry(), publisher_factory=no_publisher)  # type: ignore[arg-type]
    return json.dumps(app.openapi(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
