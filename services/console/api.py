"""The console's web server: the ops page, its JSON, the chart library and font it needs, and /metrics, /healthz,
/readyz (`gridhub serve console`).

* `GET /ops`: the page (Chinese, English beside the figures' names); it reads `/ops/api/series` every poll interval
  and draws with Chart.js, served from this package (`static/`, no CDN: county networks are often closed).
* `GET /ops/api/series`: the charts' series and bars, the triage queue (titles and routing facts only, no reporter)
  and the week's ranking, as JSON with Chinese unescaped.
* `GET /ops/font/sans.otf`: Noto Sans SC from the `pylopdf-fonts-zh-cn` wheel, for machines without a CJK font (the
  page asks for it only when none of the usual local Chinese fonts is installed).

Ready (`/readyz`) once the first poll is done, whatever it found: the page shows which services did not answer.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from gridhub.kernel.health import Health
from gridhub.kernel.http import install_problem_handlers, ops_router, problem
from gridhub.kernel.runtime import serve_http
from schemas.dutylist import load_duty_list
from services.console.figures import Figures, short_name
from services.console.poller import Poller
from services.console.settings import ConsoleSettings

SERVICE = "console"
STATIC = Path(__file__).parent / "static"


class ChineseJSON(Response):
    """JSON with Chinese kept as UTF-8."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def packaged_font() -> Path | None:
    """Noto Sans SC from the font wheel, if installed."""
    try:
        import pylopdf_fonts_zh_cn
    except ImportError:
        return None
    path = Path(pylopdf_fonts_zh_cn.sans_path())
    return path if path.is_file() else None


def matter_names() -> dict[str, str]:
    """Matter code → name from the packaged duty list (labels only; the router routes on the published one)."""
    try:
        return {m.code: short_name(m.name) for m in load_duty_list().matters}
    except Exception:
        return {}


def create_app(
    settings: ConsoleSettings,
    registry: CollectorRegistry,
    *,
    poll: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The console app; with `poll` its lifespan runs the poller (tests may drive `app.state.poller` themselves)."""
    figures = Figures(
        window_s=settings.window_s,
        interval_s=settings.poll_interval_s,
        rate_window_s=settings.rate_window_s,
        matter_names=matter_names(),
    )
    poller = Poller(settings, figures, registry, transport=transport)
    health = Health(SERVICE)
    health.add("polled", lambda: poller.polls > 0)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(poller.run(), name="console-poller") if poll else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await poller.close()

    app = FastAPI(title="GridHub console", description="运行监控页 Operations page", lifespan=lifespan)
    app.state.poller = poller
    app.state.figures = figures
    install_problem_handlers(app)
    app.include_router(ops_router(registry, health))
    app.mount("/ops/static", StaticFiles(directory=STATIC), name="ops-static")
    page = (STATIC / "ops.html").read_bytes()

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/ops")

    @app.get("/ops", summary="运行监控页 Operations page")
    async def ops_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    @app.get("/ops/api/series", summary="图表数据 Charts' series, triage queue and weekly ranking")
    async def series() -> Response:
        return ChineseJSON(figures.as_json(), headers={"Cache-Control": "no-store"})

    @app.get("/ops/font/sans.otf", include_in_schema=False)
    async def font() -> Response:
        path = packaged_font()
        if path is None:
            return problem(404, "未安装中文字体包 pylopdf-fonts-zh-cn。", instance="/ops/font/sans.otf")
        return FileResponse(path, media_type="font/otf", headers={"Cache-Control": "public, max-age=86400"})

    return app


def main() -> None:
    """Entry point of `gridhub serve console`."""
    settings = ConsoleSettings()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request polled is noise
    serve_http(create_app(settings, CollectorRegistry()), SERVICE, settings.common, settings.host, settings.port)
