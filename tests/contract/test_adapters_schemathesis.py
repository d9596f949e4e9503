"""Property-based contract test: schemathesis drives the adapters' generated OpenAPI and finds no 5xx."""

from __future__ import annotations

import time

import schemathesis
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry
from schemathesis.checks import positive_data_acceptance

from gridhub.kernel.settings import CommonSettings
from services.adapters.api import create_api
from services.adapters.settings import DEV_WECHAT_TOKEN, AdaptersSettings
from services.adapters.wechat.protocol import signature


class RecordingPublisher:
    """Stands in for the Kafka producer: this test is about the HTTP contract, not the bus."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.records.append((topic, key, value))


async def _publisher() -> RecordingPublisher:
    return RecordingPublisher()


APP = create_api(
    AdaptersSettings(
        common=CommonSettings(mode="dev"),
        source_keys={"12345": "k-12345", "110": "k-110", "petition": "k-petition", "gridapp": "k-gridapp"},
        unit_keys={},
    ),
    CollectorRegistry(),
    publisher_factory=_publisher,
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


# Authenticated, so generated bodies reach validation and publishing; 401s are covered by the unit tests.
AUTH = {
    "/v1/12345/work-orders": {"X-Api-Key": "k-12345"},
    "/v1/110/incidents": {"X-Api-Key": "k-110"},
    "/v1/petitions": {"X-Api-Key": "k-petition"},
    "/v1/gridapp/reports": {"X-Api-Key": "k-gridapp"},
    "/v1/12345/work-orders/batch": {"X-Api-Key": "k-12345"},
    "/v1/110/incidents/batch": {"X-Api-Key": "k-110"},
    "/v1/petitions/batch": {"X-Api-Key": "k-petition"},
    "/v1/gridapp/reports/batch": {"X-Api-Key": "k-gridapp"},
    "/v1/gridapp/reports/upload": {"X-Api-Key": "k-gridapp"},
    "/v1/attachments/{sha256}": {"Authorization": "Bearer dev-PA-CG"},
    "/v1/tasks/{task_id}/updates": {"Authorization": "Bearer dev-PA-CG"},
    "/open311/v2/requests.json": {"X-Api-Key": "k-12345"},
}


WECHAT = "/v1/wechat/callback"


def sign_wechat(case: schemathesis.Case) -> None:
    """Sign as WeChat does in plaintext mode (the query only), so generated XML bodies reach the parser."""
    stamp = str(int(time.time()))
    query = {k: v for k, v in (case.query or {}).items() if k not in ("encrypt_type", "msg_signature")}
    case.query = {**query, "signature": signature(DEV_WECHAT_TOKEN, stamp, "1"), "timestamp": stamp, "nonce": "1"}


@schema.parametrize()
# Derandomised: the same examples every run, so CI never flips on a lucky draw; raise max_examples to explore.
@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_responses_match_the_schema(case: schemathesis.Case) -> None:
    # A photo part is "binary" in OpenAPI; that it must really be a JPEG, PNG or WebP (checked by its bytes)
    # cannot be said there, so random bytes answered with 415 are not a "schema-valid request rejected".
    excluded = [positive_data_acceptance] if case.path == "/v1/gridapp/reports/upload" else []
    if case.path == WECHAT:
        sign_wechat(case)
        # What a message must carry depends on its MsgType (Content, PicUrl, Location_X...), which the XML
        # schema does not spell out; such a message is answered 400, as the unit tests check field by field.
        excluded = [positive_data_acceptance] if case.method == "POST" else []
    case.call_and_validate(headers=AUTH.get(case.path, {}), excluded_checks=excluded)
