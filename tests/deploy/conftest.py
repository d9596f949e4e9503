"""What the deploy checks compare the files with: the files themselves, the settings classes, the services' metric
registries (each service's create_app on its own CollectorRegistry, nothing connected) and the CLI's services."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from gridhub.cli import Service
from gridhub.kernel.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
K8S_DIR = DEPLOY / "k8s"
TOPICS_SCRIPT = DEPLOY / "kafka" / "create-topics.sh"
GRAFANA_DIR = DEPLOY / "grafana"
DATA = Path(__file__).resolve().parent / "data"

# `gridhub serve` choices that deploy/ leaves out on purpose, with the reason; any other choice must be deployed.
NOT_DEPLOYED = {
    "console": "the ops page `gridhub up` serves in place of Grafana; deployments have Grafana (deploy/grafana/)",
}
SERVICES = tuple(s.value for s in Service if s.value not in NOT_DEPLOYED)


def settings_class(service: str) -> type[BaseSettings]:
    """The pydantic Settings class `gridhub serve <service>` reads."""
    from services.adapters.settings import AdaptersSettings
    from services.intake.settings import IntakeSettings
    from services.notifier.settings import NotifierSettings
    from services.router.settings import RouterSettings
    from services.sla.settings import SlaSettings

    classes: dict[str, type[BaseSettings]] = {
        "adapters": AdaptersSettings,
        "intake": IntakeSettings,
        "router": RouterSettings,
        "sla": SlaSettings,
        "notifier": NotifierSettings,
    }
    return classes[service]


def env_names(cls: type[BaseSettings], *, skip: tuple[str, ...] = ("common",)) -> set[str]:
    """Every environment variable a Settings class reads: <prefix><FIELD> and each validation alias."""
    prefix = cls.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, field in cls.model_fields.items():
        if name in skip:
            continue
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def service_env_names(service: str) -> set[str]:
    """What a container of `service` may set: the common settings and the service's own."""
    return env_names(CommonSettings) | env_names(settings_class(service))


def all_env_names() -> set[str]:
    """What a ConfigMap shared by every service may hold."""
    names = env_names(CommonSettings)
    for service in SERVICES:
        names |= env_names(settings_class(service))
    return names


def default_port(service: str) -> int:
    """The service's HTTP port when GRIDHUB_<SERVICE>_PORT is not set."""
    default = settings_class(service).model_fields["port"].default
    assert isinstance(default, int)
    return default


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object and the file it came from."""

    path: Path
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}: {self.kind}/{self.name}"


def load_manifests(paths: list[Path]) -> list[Manifest]:
    """Every non-empty YAML document of the files."""
    out: list[Manifest] = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                out.append(Manifest(path, doc))
    return out


def k8s_files() -> list[Path]:
    """deploy/k8s/*.yaml (applied together), the Secret template and the optional Kafka cluster."""
    return [
        *sorted(K8S_DIR.glob("*.yaml")),
        *sorted((K8S_DIR / "templates").glob("*.yaml")),
        *sorted((K8S_DIR / "kafka").glob("*.yaml")),
    ]


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """deploy/compose.yaml as YAML (anchors and merge keys resolved), not interpolated."""
    doc = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="session")
def manifests() -> list[Manifest]:
    return load_manifests(k8s_files())


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")


def workloads(manifests: list[Manifest]) -> Iterator[Manifest]:
    return (m for m in manifests if m.kind in WORKLOAD_KINDS)


def pod_spec(m: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = m.doc["spec"]["template"]["spec"]
    return spec


def served_service(container: dict[str, Any]) -> str | None:
    """The service a gridhub container runs (`serve <service>`), else None."""
    args = [*container.get("command", []), *container.get("args", [])]
    if len(args) >= 2 and args[0] == "serve":
        return str(args[1])
    return None


@dataclass(frozen=True)
class Registries:
    """The metric names and label names of every service, and each batch worker's group and topics."""

    labels: dict[str, frozenset[str]]  # metric name (with its _total/_bucket/... forms) -> label names
    groups: dict[str, str]  # service -> consumer group
    topics: dict[str, tuple[str, ...]]  # service -> the topics its batch loop consumes (full names)


@pytest.fixture(scope="session")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Registries:
    """Build each service (dev settings, a scratch data dir) on its own registry; nothing connects or starts."""
    from services.adapters.api import create_api
    from services.adapters.settings import AdaptersSettings
    from services.intake.settings import IntakeSettings
    from services.intake.worker import create_app as intake_app
    from services.notifier.settings import NotifierSettings
    from services.notifier.worker import create_app as notifier_app
    from services.router.settings import RouterSettings
    from services.router.worker import create_app as router_app
    from services.sla.settings import SlaSettings
    from services.sla.worker import create_app as sla_app

    common = CommonSettings(mode="dev", data_dir=tmp_path_factory.mktemp("registries"))
    labels: dict[str, frozenset[str]] = {}
    groups: dict[str, str] = {}
    topics: dict[str, tuple[str, ...]] = {}

    def collect(registry: CollectorRegistry) -> None:
        # prometheus_client keeps every exposed name (x, x_total, x_bucket, x_count, ...) with its collector.
        for name, collector in registry._names_to_collectors.items():
            labels[name] = frozenset(getattr(collector, "_labelnames", ()))

    registry = CollectorRegistry()
    create_api(AdaptersSettings(common=common), registry)
    collect(registry)
    for app_of, settings in (
        (intake_app, IntakeSettings(common=common)),
        (router_app, RouterSettings(common=common)),
        (sla_app, SlaSettings(common=common)),
        (notifier_app, NotifierSettings(common=common)),
    ):
        registry = CollectorRegistry()
        app = app_of(settings, registry)
        collect(registry)
        groups[app.service] = app.loop.group
        topics[app.service] = tuple(app.loop.topics)
    return Registries(labels, groups, topics)


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: object, given: dict[str, str] | None = None) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message} with `given` as the shell (missing: default or '')."""
    given = given or {}

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in given:
            return given[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            return f"<{name}>"
        return ""

    return _INTERPOLATION.sub(one, str(value))
