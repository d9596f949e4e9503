"""Photos: content-addressed storage, type and size limits, upload with a grid report, download by units."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from gridhub.kernel.settings import CommonSettings
from schemas import ReportReceived
from services.adapters.api import create_api
from services.adapters.attachments import NotAnImage, PhotoStore, PhotoTooLarge, sniff_image
from services.adapters.settings import AdaptersSettings

JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(200))
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
REPORT = {
    "report_no": "WG-20261120-07",
    "worker_id": "WGY-0317",
    "grid_code": "PA-CG-01-001",
    "reported_at": "2026-11-20T08:40:00+08:00",
    "description": "下水道堵塞反流",
    "photos": ["https://oss.pingan.example/wg/0317/a1.jpg"],
}


def test_sniff_recognises_images_by_their_bytes_not_their_names() -> None:
    assert (sniff_image(JPEG), sniff_image(PNG), sniff_image(WEBP)) == ("image/jpeg", "image/png", "image/webp")
    assert sniff_image(b"GIF89a....") is None
    assert sniff_image(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None


def test_store_is_content_addressed_idempotent_and_limited(tmp_path: Path) -> None:
    store = PhotoStore(tmp_path, max_bytes=1024)
    first = store.put(JPEG)
    again = store.put(JPEG)
    assert first == again
    assert first.sha256 == hashlib.sha256(JPEG).hexdigest()
    assert store.path_for(first.sha256) == tmp_path / first.sha256[:2] / first.sha256
    assert store.read(first.sha256) == (JPEG, "image/jpeg")
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [first.sha256]
    with pytest.raises(PhotoTooLarge):
        store.put(b"\xff\xd8\xff" + b"\x00" * 1024)
    with pytest.raises(NotAnImage):
        store.put(b"%PDF-1.7")
    with pytest.raises(ValueError, match="sha256"):
        store.path_for("../../etc/passwd")


class Publisher:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.records.append((topic, key, value))


@pytest.fixture()
def publisher() -> Publisher:
    return Publisher()


@pytest.fixture()
async def client(tmp_path: Path, publisher: Publisher) -> AsyncIterator[httpx.AsyncClient]:
    settings = AdaptersSettings(
        common=CommonSettings(mode="dev", data_dir=tmp_path),
        source_keys={"gridapp": "k"},
        unit_keys={},
        max_photo_bytes=1024,
        max_photos=2,
        public_base_url="https://hub.pingan.example",
    )

    async def factory() -> Publisher:
        return publisher

    app: FastAPI = create_api(settings, CollectorRegistry(), publisher_factory=factory)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://adapters.test") as c,
    ):
        yield c


async def upload(client: httpx.AsyncClient, photos: list[bytes], report: object = REPORT) -> httpx.Response:
    files = [("photos", (f"p{n}.jpg", data, "image/jpeg")) for n, data in enumerate(photos)]
    text = report if isinstance(report, str) else json.dumps(report, ensure_ascii=False)
    return await client.post(
        "/v1/gridapp/reports/upload", data={"report": text}, files=files, headers={"X-Api-Key": "k"}
    )


async def test_uploaded_photos_are_stored_and_linked_from_the_report(
    client: httpx.AsyncClient, publisher: Publisher
) -> None:
    response = await upload(client, [JPEG, PNG])
    assert response.status_code == 202, response.text
    raw = ReportReceived.model_validate_json(publisher.records[0][2])
    sha_jpeg, sha_png = hashlib.sha256(JPEG).hexdigest(), hashlib.sha256(PNG).hexdigest()
    assert raw.payload["photos"] == [
        "https://oss.pingan.example/wg/0317/a1.jpg",
        f"https://hub.pingan.example/v1/attachments/{sha_jpeg}",
        f"https://hub.pingan.example/v1/attachments/{sha_png}",
    ]
    photo = await client.get(f"/v1/attachments/{sha_png}", headers={"Authorization": "Bearer dev-PA-CG"})
    assert (photo.status_code, photo.headers["content-type"], photo.content) == (200, "image/png", PNG)
    anonymous = await client.get(f"/v1/attachments/{sha_png}")
    assert anonymous.status_code == 401
    missing = await client.get("/v1/attachments/" + "0" * 64, headers={"Authorization": "Bearer dev-PA-CG"})
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("photos", "report", "status"),
    [
        ([b"%PDF-1.7 not a photo"], REPORT, 415),
        ([b"\xff\xd8\xff" + b"\x00" * 2000], REPORT, 413),
        ([JPEG, PNG, WEBP], REPORT, 400),  # more than max_photos
        ([JPEG], "{不是 JSON", 422),
        ([JPEG], {"worker_id": "WGY-0317"}, 422),  # no report_no
    ],
)
async def test_bad_uploads_are_refused_and_nothing_is_published(
    client: httpx.AsyncClient, publisher: Publisher, photos: list[bytes], report: object, status: int
) -> None:
    response = await upload(client, photos, report)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert publisher.records == []


async def test_upload_needs_the_grid_apps_key(client: httpx.AsyncClient, publisher: Publisher) -> None:
    response = await client.post("/v1/gridapp/reports/upload", data={"report": json.dumps(REPORT)})
    assert response.status_code == 401
    assert publisher.records == []


@pytest.mark.parametrize(
    "report",
    [
        "[" * 10_000,  # json.loads runs out of stack: RecursionError
        '{"report_no": "WG-DEEP-1", "extra": ' + "[" * 300 + "]" * 300 + "}",  # parses, but too deep to publish
    ],
)
async def test_deeply_nested_report_is_400_not_500(
    client: httpx.AsyncClient, publisher: Publisher, report: str
) -> None:
    response = await upload(client, [JPEG], report)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [{"field": "report", "message": "JSON 嵌套超过 64 层"}]
    assert publisher.records == []
