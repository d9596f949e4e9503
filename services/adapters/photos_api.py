"""Grid reports with uploaded photos (multipart), and photo download for units."""
# No "from __future__ import annotations": FastAPI must see the Depends(unit_of) of a closure at runtime.

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from gridhub.kernel.http import problem
from schemas import Channel
from services.adapters.attachments import SHA256, NotAnImage, PhotoStore, PhotoTooLarge
from services.adapters.channels import SOURCE_ID, TOO_DEEP_ZH, JsonChannel, channel_spec, too_deep
from services.adapters.headers import SignatureHeader, TimestampHeader

SourceCheck = Callable[[Channel, Request, str | None, str | None, str | None], Awaitable[Response | None]]
Accept = Callable[[JsonChannel, dict[str, Any]], Awaitable[Response]]

MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["report"],
                    "properties": {
                        "report": {
                            "type": "object",
                            "description": "The grid report as JSON, the same fields as POST /v1/gridapp/reports.",
                            "required": ["report_no"],
                            "properties": {"report_no": {"type": "string", "pattern": SOURCE_ID.pattern}},
                            "additionalProperties": True,
                        },
                        "photos": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    },
                },
                "encoding": {"report": {"contentType": "application/json"}},
            }
        },
    }
}


def photo_router(
    store: PhotoStore,
    max_photos: int,
    public_base_url: str,
    authenticate_source: SourceCheck,
    accept: Accept,
    unit_of: Callable[..., str | None],
) -> APIRouter:
    """Routes for uploading a grid report with photos and fetching a stored photo."""
    router = APIRouter()
    spec = channel_spec(Channel.GRID_APP)

    @router.post(
        "/v1/gridapp/reports/upload",
        status_code=202,
        tags=["grid app"],
        summary="Receive one grid worker's report with photos uploaded (multipart)",
        openapi_extra=MULTIPART_BODY,
        responses={200: {"description": "Already received (same report_no): its event id, status duplicate"}},
    )
    async def receive_with_photos(
        request: Request,
        x_api_key: Annotated[str | None, Header(description="The grid app's API key.")] = None,
        x_timestamp: TimestampHeader = None,
        x_signature: SignatureHeader = None,
    ) -> Response:
        """Store each photo by its sha256, add its URL to the report's photos, then accept the report."""
        refused = await authenticate_source(spec.channel, request, x_api_key, x_timestamp, x_signature)
        if refused is not None:
            return refused
        try:
            form = await request.form(max_files=max_photos, max_fields=10)
        except Exception as exc:
            return problem(400, f"无法读取 multipart 表单：{exc}")
        try:
            report_text = form.get("report")
            if not isinstance(report_text, str):
                return problem(
                    422, "缺少 report 字段（上报内容 JSON）。", errors=[{"field": "report", "message": "必填字段缺失"}]
                )
            try:
                report = json.loads(report_text)
            except json.JSONDecodeError as exc:
                return problem(
                    422, f"report 不是有效的 JSON：{exc.msg}", errors=[{"field": "report", "message": "应为 JSON 对象"}]
                )
            except RecursionError:
                # json.loads recurses per nesting level: [[[[... thousands deep exhausts the stack. 400, like the
                # JSON routes (api.py's json_object), not a 500.
                return problem(400, f"report 的 {TOO_DEEP_ZH}。", errors=[{"field": "report", "message": TOO_DEEP_ZH}])
            if not isinstance(report, dict):
                return problem(
                    422, "report 应为 JSON 对象。", errors=[{"field": "report", "message": "应为 JSON 对象"}]
                )
            if too_deep(report):
                return problem(400, f"report 的 {TOO_DEEP_ZH}。", errors=[{"field": "report", "message": TOO_DEEP_ZH}])
            uploads = form.getlist("photos")
            if not all(isinstance(item, UploadFile) for item in uploads):
                return problem(
                    422, "photos 只能是上传的照片文件。", errors=[{"field": "photos", "message": "应为文件"}]
                )
            urls = []
            for index, upload in enumerate(uploads):
                assert isinstance(upload, UploadFile)  # checked above; narrows the type
                data = await upload.read(store.max_bytes + 1)
                try:
                    photo = store.put(data)
                except PhotoTooLarge as exc:
                    return problem(413, str(exc), errors=[{"field": f"photos.{index}", "message": str(exc)}])
                except NotAnImage as exc:
                    return problem(415, str(exc), errors=[{"field": f"photos.{index}", "message": str(exc)}])
                urls.append(f"{public_base_url}/v1/attachments/{photo.sha256}")
        finally:
            await form.close()
        existing = report.get("photos")
        report["photos"] = [*(existing if isinstance(existing, list) else []), *urls]
        return await accept(spec, report)

    @router.get("/v1/attachments/{sha256}", tags=["units"], summary="A stored photo, for the units that act on it")
    async def photo(
        sha256: Annotated[str, Path(pattern=SHA256.pattern, description="sha256 of the photo, lowercase hex.")],
        unit: Annotated[str | None, Depends(unit_of)],
    ) -> Response:
        """The photo with this content address; any authenticated unit may fetch it."""
        if unit is None:
            return problem(
                401, "缺少或错误的单位密钥（Authorization: Bearer ...）。", headers={"WWW-Authenticate": "Bearer"}
            )
        found = store.read(sha256)
        if found is None:
            return problem(404, "没有这张照片。")
        data, media_type = found
        return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=86400, immutable"})

    return router
