"""Faust application factory: one consumer group per service, idempotence and session timeout from settings."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT

from gridhub.kernel.settings import CommonSettings
from schemas.catalogue import PARTITIONS


class _IdempotentProducer(faust_aiokafka.Producer):
    """Faust's producer asks for idempotence only inside transactions; real Kafka gets it always."""

    def _settings_extra(self) -> dict[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust hard-codes a 1.5 s fetch wait; Tansu does not answer a parked fetch when data arrives,
    so every hop would wait up to 1.5 s. The wait comes from GRIDHUB_KAFKA_FETCH_MAX_WAIT_MS instead."""

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this when start() builds its fetcher; there is no public setter.
        consumer._fetch_max_wait_ms = cast(GridhubApp, self.app).gridhub_fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[faust_aiokafka.Consumer]] = _Consumer


class _IdempotentTransport(_Transport):
    Producer: ClassVar[type[faust_aiokafka.Producer]] = _IdempotentProducer


class GridhubApp(faust.App):
    """faust.App whose producer transport honours GRIDHUB_KAFKA_IDEMPOTENCE."""

    def __init__(self, *args: Any, idempotence: bool, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self._gridhub_idempotence = idempotence
        self.gridhub_fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> TransportT:
        transport = _IdempotentTransport if self._gridhub_idempotence else _Transport
        return transport(self.conf.broker_producer, self)


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
    # Faust makes only the last level of its data dir.
    (common.data_dir / service).mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "broker": [f"kafka://{host.strip()}" for host in common.kafka_bootstrap.split(",")],
        "store": store,
        "datadir": str(common.data_dir / service),
        # The cause of the 30 s first start on Tansu: Faust's 60 s default session timeout.
        "broker_session_timeout": common.session_timeout_s,
        "broker_heartbeat_interval": max(0.5, common.session_timeout_s / 6),
        "broker_rebalance_timeout": max(common.session_timeout_s, 10.0),
        "producer_acks": -1,
        # Faust's default linger of 0 sends one produce request per message.
        "producer_linger": common.kafka_linger_ms / 1000,
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
    return GridhubApp(
        common.group(service),
        idempotence=common.kafka_idempotence,
        fetch_max_wait_ms=common.kafka_fetch_max_wait_ms,
        **options,
    )
