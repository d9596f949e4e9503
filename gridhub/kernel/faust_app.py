"""Faust application factory: one consumer group per service, idempotence and session timeout from settings."""

from __future__ import annotations

from typing import Any, ClassVar

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT

from gridhub.kernel.settings import CommonSettings
from schemas.catalogue import PARTITIONS


class _IdempotentProducer(faust_aiokafka.Producer):
    """Faust's producer asks for idempotence only inside transactions; real Kafka gets it always."""

    def _settings_extra(self) -> dict[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class _IdempotentTransport(faust_aiokafka.Transport):
    Producer: ClassVar[type[faust_aiokafka.Producer]] = _IdempotentProducer


class GridhubApp(faust.App):
    """faust.App whose producer transport honours GRIDHUB_KAFKA_IDEMPOTENCE."""

    def __init__(self, *args: Any, idempotence: bool, **kwargs: Any) -> None:
        self._gridhub_idempotence = idempotence
        super().__init__(*args, **kwargs)

    def _new_producer_transport(self) -> TransportT:
        if not self._gridhub_idempotence:
            return super()._new_producer_transport()
        return _IdempotentTransport(self.conf.broker_producer, self)


def make_faust_app(
    service: str,
    common: CommonSettings,
    *,
    web_port: int,
    web_host: str = "127.0.0.1",
    store: str = "memory://",
    **overrides: Any,
) -> faust.App:
    """Build the Faust app of one service with GridHub's broker, group id and timeouts."""
    options: dict[str, Any] = {
        "broker": [f"kafka://{host.strip()}" for host in common.kafka_bootstrap.split(",")],
        "store": store,
        "datadir": str(common.data_dir / service),
        # The cause of the 30 s first start on Tansu: Faust's 60 s default session timeout.
        "broker_session_timeout": common.session_timeout_s,
        "broker_heartbeat_interval": max(0.5, common.session_timeout_s / 6),
        "broker_rebalance_timeout": max(common.session_timeout_s, 10.0),
        "producer_acks": -1,
        "topic_partitions": PARTITIONS,
        "topic_replication_factor": common.kafka_replication_factor,
        "topic_allow_declare": True,
        "consumer_auto_offset_reset": "earliest",
        "web_enabled": True,
        "web_port": web_port,
        "web_bind": web_host,
        "web_host": web_host,
        "web_in_thread": False,
        "autodiscover": False,
        "table_cleanup_interval": 30.0,
    }
    options.update(overrides)
    return GridhubApp(common.group(service), idempotence=common.kafka_idempotence, **options)
