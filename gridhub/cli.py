"""The `gridhub` command: run the hub, its broker and its services; manage topics and schemas."""

from __future__ import annotations

import asyncio
import importlib
import json
import signal
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from gridhub.deadline_cli import deadline_command
from gridhub.dutylist_cli import dutylist_app, route_command
from gridhub.report_cli import report_app

app = typer.Typer(
    help="GridHub: the integration hub of a county governance command centre.\n\n"
    "Start here: `gridhub up` runs everything on an embedded broker (or on KAFKA_BOOTSTRAP). "
    "Each service can also run alone with `gridhub serve SERVICE`.",
    no_args_is_help=True,
    add_completion=False,
)
topics_app = typer.Typer(help="The topic catalogue on the broker.", no_args_is_help=True)
schemas_app = typer.Typer(help="JSON Schema files generated from the message models.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo companions: a unit's webhook receiver and a traffic simulator.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(demo_app, name="demo")
app.add_typer(dutylist_app, name="dutylist")
app.add_typer(report_app, name="report")


class Service(StrEnum):
    """The five services, and the ops console (the page `gridhub up` serves in place of Grafana)."""

    adapters = "adapters"
    intake = "intake"
    router = "router"
    sla = "sla"
    notifier = "notifier"
    console = "console"


ENTRY_MODULES = {
    Service.adapters: "services.adapters.api",
    Service.intake: "services.intake.worker",
    Service.router: "services.router.worker",
    Service.sla: "services.sla.worker",
    Service.notifier: "services.notifier.worker",
    Service.console: "services.console.api",
}


@app.command()
def up(
    rate: Annotated[float, typer.Option(help="Simulated work orders per second.")] = 0.5,
    simulate: Annotated[bool, typer.Option(help="Run the traffic simulator.")] = True,
    data_dir: Annotated[Path, typer.Option(help="Logs and local state.")] = Path("var"),
) -> None:
    """Run the whole hub: broker, topics, five services, a demo receiver and simulator. Ctrl-C stops it."""
    from gridhub.up import run_up

    raise typer.Exit(run_up(rate, simulate, data_dir))


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Loopback port to listen on (0 = any free port).")] = 9092,
) -> None:
    """Run the embedded Tansu broker (memory storage) in the foreground until Ctrl-C."""
    from gridhub.broker import EmbeddedBroker

    embedded = EmbeddedBroker(port=port or None)
    embedded.start()
    typer.echo(
        f"Tansu is answering on {embedded.bootstrap}; export KAFKA_BOOTSTRAP={embedded.bootstrap} "
        "GRIDHUB_KAFKA_IDEMPOTENCE=false. Ctrl-C stops it."
    )
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop and embedded.pid is not None:
            time.sleep(0.2)
    finally:
        embedded.stop()
        typer.echo("broker stopped")


@app.command()
def serve(service: Annotated[Service, typer.Argument(help="Which service to run.")]) -> None:
    """Run one service in the foreground (settings from GRIDHUB_* environment variables)."""
    module = importlib.import_module(ENTRY_MODULES[service])
    module.main()


@topics_app.command("create")
def topics_create(
    partitions: Annotated[int | None, typer.Option(help="Override every topic's partition count.")] = None,
) -> None:
    """Create every catalogue topic that does not exist yet (safe to run again)."""
    from gridhub.kernel.kafka import create_topics
    from gridhub.kernel.settings import CommonSettings

    outcome = asyncio.run(create_topics(CommonSettings(), partitions=partitions))
    for topic, what in outcome.items():
        typer.echo(f"{what:8} {topic}")


@topics_app.command("list")
def topics_list() -> None:
    """Print the catalogue (name, key, value model, partitions, cleanup, retention), then services' own topics."""
    from gridhub.kernel.settings import CommonSettings
    from schemas import CATALOGUE
    from schemas.catalogue import INTERNAL_TOPICS

    common = CommonSettings()
    for spec in CATALOGUE:
        retention = "forever" if spec.retention_ms < 0 else f"{spec.retention_ms // 86_400_000}d"
        typer.echo(
            f"{common.topic(spec.name):32} key={spec.key:18} {spec.value_model.__name__:20} "
            f"p={spec.partitions} {spec.cleanup_policy:7} {retention}"
        )
    for internal in INTERNAL_TOPICS:
        retention = "forever" if internal.retention_ms < 0 else f"{internal.retention_ms // 86_400_000}d"
        typer.echo(
            f"{common.topic(internal.name):32} key={internal.key.split(',')[0]:18} {'(' + internal.service + ')':20} "
            f"p={internal.partitions} {internal.cleanup_policy:7} {retention}"
        )


@schemas_app.command("generate")
def schemas_generate() -> None:
    """Write schemas/json/*.schema.json, schemas/asyncapi.json and the adapters' openapi.json from the code."""
    from gridhub import __version__
    from schemas.asyncapi import ASYNCAPI_PATH, render_asyncapi
    from schemas.jsonschema import write_all
    from services.adapters.openapi import OPENAPI_PATH, render_openapi

    for path in write_all():
        typer.echo(f"wrote {path}")
    OPENAPI_PATH.write_text(render_openapi(), encoding="utf-8")
    typer.echo(f"wrote {OPENAPI_PATH}")
    ASYNCAPI_PATH.write_text(render_asyncapi(__version__), encoding="utf-8")
    typer.echo(f"wrote {ASYNCAPI_PATH}")


@schemas_app.command("check")
def schemas_check() -> None:
    """Exit 1 when a checked-in JSON Schema, AsyncAPI or OpenAPI file is stale."""
    from gridhub import __version__
    from schemas.asyncapi import ASYNCAPI_PATH, render_asyncapi
    from schemas.jsonschema import stale_files
    from services.adapters.openapi import OPENAPI_PATH, render_openapi

    stale = stale_files()
    if not OPENAPI_PATH.exists() or OPENAPI_PATH.read_text("utf-8") != render_openapi():
        stale.append(OPENAPI_PATH)
    if not ASYNCAPI_PATH.exists() or ASYNCAPI_PATH.read_text("utf-8") != render_asyncapi(__version__):
        stale.append(ASYNCAPI_PATH)
    for path in stale:
        typer.echo(f"stale: {path}", err=True)
    raise typer.Exit(1 if stale else 0)


@demo_app.command("receiver")
def demo_receiver(
    port: Annotated[int, typer.Option()] = 8200,
    log: Annotated[Path, typer.Option(help="JSON lines of received webhooks.")] = Path("var/logs/receiver.jsonl"),
    act_after: Annotated[
        float | None,
        typer.Option(help="Seconds after which the unit accepts, contacts and resolves each task; off when unset."),
    ] = None,
) -> None:
    """A unit's webhook endpoint: verifies signatures, logs deliveries, optionally works the tasks."""
    import uvicorn
    from pydantic_settings import BaseSettings, SettingsConfigDict

    from gridhub.demo.receiver import create_receiver
    from services.notifier.settings import DEV_SIGNING_SECRET

    class DemoSettings(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="GRIDHUB_DEMO_", extra="ignore")
        adapters_url: str = "http://127.0.0.1:8000"
        signing_secret: str = DEV_SIGNING_SECRET

    settings = DemoSettings()
    receiver = create_receiver(settings.signing_secret, log, settings.adapters_url, act_after)
    uvicorn.run(receiver, host="127.0.0.1", port=port, log_level="warning")


@demo_app.command("simulate")
def demo_simulate(
    rate: Annotated[float, typer.Option(help="Work orders per second.")] = 0.5,
    count: Annotated[int | None, typer.Option(help="Stop after this many; forever when unset.")] = None,
    url: Annotated[str, typer.Option(help="Adapters base URL.")] = "http://127.0.0.1:8000",
    api_key: Annotated[str, typer.Option(envvar="GRIDHUB_DEMO_API_KEY")] = "dev-12345-key",
) -> None:
    """Post realistic 12345 work orders at a steady rate."""
    from gridhub.demo.simulator import simulate

    asyncio.run(simulate(url, api_key, rate, count))


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A .jsonl or .csv file of reports.")],
    source: Annotated[str, typer.Option(help="Channel of the file: 12345, 110, petition or gridapp.")] = "12345",
    rejects: Annotated[Path | None, typer.Option(help="Where rejected rows go (JSON lines).")] = None,
) -> None:
    """Backfill a channel from a file onto its raw topic; intake validates, dedupes and dead-letters as usual."""
    from gridhub.importer import run_import
    from schemas import Channel
    from services.adapters.channels import JSON_CHANNELS

    importable = {spec.channel.value: spec.channel for spec in JSON_CHANNELS}
    if source not in importable:
        raise typer.BadParameter(
            f"{source!r} cannot be imported from a file; one of {sorted(importable)}", param_hint="--source"
        )
    channel: Channel = importable[source]
    rejects_path = rejects or file.with_name(f"{file.stem}.rejected.jsonl")
    summary = run_import(channel, file, rejects_path)
    typer.echo(json.dumps({**summary.as_dict(), "rejects_file": str(rejects_path)}, ensure_ascii=False))


app.command("route")(route_command)
app.command("deadline")(deadline_command)


@app.command()
def version() -> None:
    """Print the GridHub version."""
    from gridhub import __version__

    typer.echo(json.dumps({"gridhub": __version__}))


def main() -> None:
    """Console entry point."""
    app()
