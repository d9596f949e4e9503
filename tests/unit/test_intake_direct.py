"""Intake's one-pass path (channels.Direct, event_bytes) against the full path: the same outputs, byte for byte.

The one-pass path validates envelope and payload in one JSON validation and writes the event's bytes without
validating the event again; whatever it does not take goes the full path. These tests hold the two equal on
varied reports, valid and not: Chinese text, escapes, missing optional fields, odd numbers and times, wrong types,
bare payloads, other sources, mismatched ids, duplicates.
"""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError, computed_field, field_serializer

from gridhub.kernel.batchout import KafkaDeadLetters
from gridhub.kernel.settings import CommonSettings
from schemas import Attachment, Channel, EventNormalised, Location, Reporter, ReportReceived, SourceRef, new_id
from schemas.raw import SOURCE_ID_FIELDS
from services.intake.channels import DIRECT, Direct, aware_in_core
from services.intake.channels.common import event, event_bytes, parse_payload
from services.intake.channels.gridapp import GridReport, fields_gridapp
from services.intake.channels.hotline12345 import WorkOrder12345, fields_12345
from services.intake.channels.petition import Petition, fields_petition
from services.intake.channels.police110 import PoliceIncident110, fields_110
from services.intake.wire import dict_serializer
from services.intake.worker import IntakeHandler, IntakeMetrics

PREFIX = "d."
RECEIVED = datetime(2026, 11, 20, 1, 31, 5, 120000, tzinfo=UTC)

BASE: dict[Channel, dict[str, Any]] = {
    Channel.HOTLINE_12345: {
        "order_no": "GD-2026-1120-00421",
        "caller_name": "王秀兰",
        "caller_phone": "138-3712-4567",
        "appeal_type": "投诉",
        "content": "幸福里小区3号楼下水道反流，污水漫到单元门口。\n物业称需等住建部门。",
        "address": "平安县城关镇东街幸福里小区3号楼",
        "district": "城关镇",
        "grid_code": "PA-CG-01-001",
        "lat": 35.1013,
        "lon": 114.2033,
        "urgency": "紧急",
        "call_time": "2026-11-20T09:30:00+08:00",
        "category": "城乡建设/排水",
    },
    Channel.POLICE_110: {
        "incident_no": "110-20261120-000731",
        "call_time": "2026-11-20T21:05:00+08:00",
        "incident_type": "燃气泄漏",
        "summary": "报警人称楼下饭店燃气泄漏，闻到很浓的煤气味。",
        "address": "城关镇东街83号",
        "district": "城关镇",
        "lat": 35.1031,
        "lon": 114.2099,
        "caller_name": "王女士",
        "caller_phone": "13837124567",
        "urgency": "一般",
    },
    Channel.PETITION: {
        "case_no": "XF-2026-1120-0088",
        "form": "来访",
        "registered_at": "2026-11-20T09:10:00+08:00",
        "petitioner": {"name": "李某某", "phone": "13903711234", "address": "河西乡王庄村三组"},
        "demands": "反映河西乡政府截留王庄村征地补偿款，要求足额发放。",
        "complained_unit": "河西乡人民政府",
        "people_count": 6,
        "repeat": True,
        "district": "河西乡",
        "grid_code": "PA-HX-02-001",
    },
    Channel.GRID_APP: {
        "report_no": "WG-PA-CG-01-001-20261120-07",
        "worker_id": "WGY-0317",
        "grid_code": "PA-CG-01-001",
        "reported_at": "2026-11-20T08:40:00+08:00",
        "category": "设施故障",
        "description": "幸福小区3号楼下水道堵塞反流，已拍照。",
        "lat": 35.1013,
        "lon": 114.2030,
        "photos": ["https://oss.pingan.example/wg/0317/a1.jpg"],
    },
}

TEXTS = [
    "中文内容：井盖丢失，夜间危险！",
    '引号"与\\反斜杠',
    "第一行\n第二行\r\n第三行",
    "\u2028分隔\u2029段落\x85",
    "tab\there \x01\x1f\x7f控制",
    "emoji 😀 𠀋 astral",
    "  前后空格  ",
    "</script><b>&amp;</b>",
    "x" * 61 + "\n" + "y",
    "单",
    "",
    " ",
    "a" * 10_001,
]
ODD = [None, 0, 1, -1, 1.5, True, False, [], {}, ["a"], {"a": 1}, "null"]
NUMBERS = [35, 35.0, -0.0, 0.1, 1e-7, 89.99999999999999, 90, -90, 90.0001, 180, -180.5, 1e16, "35.5", "abc", 2**70]
TIMES = [
    "2026-11-20T09:30:00+08:00",
    "2026-11-20T09:30:00Z",
    "2026-11-20T09:30:00.123456-05:00",
    "2026-11-20T09:30:00.1+05:45",
    "2026-11-20T09:30:00+23:59",
    "2026-11-20 09:30:00+0800",
    "2026-11-20T09:30:00",
    "2026-11-20",
    "2026/11/20 09:30",
    "1763602200",
    1763602200,
    1763602200.25,
    -1,
]
BOOLS = [True, False, "true", "false", 1, 0, "yes", "off", "maybe", 2]
PHONES = ["13837124567", "+86-138-3712-4567", "138 3712 4567", "１３８", "²³", "", "+-"]
URLS = ["https://oss.pingan.example/a.jpg", 'http://例子.测试/图片.png?x=1&y="2"', "not a url", "ftp://x/y"]

FIELD_VALUES: dict[str, list[Any]] = {
    "lat": NUMBERS,
    "lon": NUMBERS,
    "call_time": TIMES,
    "registered_at": TIMES,
    "reported_at": TIMES,
    "resolved_at": TIMES,
    "caller_phone": PHONES,
    "urgent": BOOLS,
    "repeat": BOOLS,
    "self_resolved": BOOLS,
    "appeal_type": ["咨询", "求助", "投诉", "举报", "建议", "表扬", " 投诉 "],
    "urgency": ["一般", "紧急", "特急", "urgent"],
    "form": ["来信", "来访", "网上信访", "电话"],
    "people_count": [1, 4, 5, 5.0, "7", 0, 10_001, 2.5, "五"],
    "photos": [[], URLS[:1], URLS[:2], URLS, [URLS[0]] * 10, "x"],
    "petitioner": [
        {},
        {"name": "张三"},
        {"phone": "123-456"},
        {"phone": "12 3"},
        {"name": '王"五', "phone": "+8613", "address": "住址\n二行", "extra": 1},
        "匿名",
    ],
}


def payload_variant(channel: Channel, rng: random.Random, seq: int = 0) -> dict[str, Any]:
    """The channel's base payload, its id numbered seq, with one to three fields changed, dropped or added."""
    payload = json.loads(json.dumps(BASE[channel]))
    payload[SOURCE_ID_FIELDS[channel]] += f"-{seq}"
    names = sorted(set(payload) | {n for n in FIELD_VALUES if n in _model(channel).model_fields} | {"unknown_extra"})
    for name in rng.sample(names, rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.15 and name != SOURCE_ID_FIELDS[channel]:
            payload.pop(name, None)
        elif name in FIELD_VALUES and roll < 0.75:
            payload[name] = rng.choice(FIELD_VALUES[name])
        elif roll < 0.93:
            payload[name] = rng.choice(TEXTS)
        else:
            payload[name] = rng.choice(ODD)
    return payload


def _model(channel: Channel) -> Any:
    return {
        Channel.HOTLINE_12345: WorkOrder12345,
        Channel.POLICE_110: PoliceIncident110,
        Channel.PETITION: Petition,
        Channel.GRID_APP: GridReport,
    }[channel]


def envelope_bytes(channel: Channel, payload: Any, rng: random.Random, **changes: Any) -> bytes:
    """An adapter's envelope around payload as JSON bytes, with the source id the payload carries."""
    own = payload.get(SOURCE_ID_FIELDS[channel]) if isinstance(payload, dict) else None
    doc: dict[str, Any] = {
        "schema_version": 1,
        "message_id": new_id(),
        "causation_id": None,
        "source": channel.value,
        "source_id": own.strip() if isinstance(own, str) and own.strip() else "ID-1",
        "proposed_event_id": new_id(),
        "received_at": rng.choice(["2026-11-20T01:31:05.12Z", "2026-11-20T09:31:05+08:00"]),
        "adapter_version": "test",
        "content_type": "application/json",
        "payload": payload,
    }
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}, ensure_ascii=rng.random() < 0.3).encode()


def record(value: bytes | None, channel: Channel, offset: int, topic: str | None = None) -> ConsumerRecord:
    topic = topic or f"raw.{channel.value}"
    return ConsumerRecord(PREFIX + topic, offset % 6, offset, 1_763_602_200_000, 0, b"k", value, None, 1, 1, ())


def handler(direct: bool) -> tuple[IntakeHandler, CollectorRegistry]:
    registry = CollectorRegistry()
    common = CommonSettings(topic_prefix=PREFIX)
    return IntakeHandler(
        common, IntakeMetrics(registry), KafkaDeadLetters(common, "intake", registry), direct=direct
    ), (registry)


_VOLATILE = re.compile(rb'"(message_id|indexed_at|dead_lettered_at)":"[^"]*"')
# Ids made anew on each run: an envelope without a message id gets one (and what refers to it differs too), a
# bare payload is wrapped with a new proposed event id.
_CAUSES = re.compile(rb'"(causation_id|raw_message_id)":"[^"]*"')
_EVENT_IDS = re.compile(rb'"(event_id)":"[^"]*"')


def comparable(outputs: Any, causes: bool = False, event_ids: bool = False) -> list[tuple[Any, ...]]:
    """Outputs with what differs between any two runs (new message ids, times) blanked out, bytes otherwise."""
    blank = [_VOLATILE, *([_CAUSES] if causes else []), *([_EVENT_IDS] if event_ids else [])]
    compared = []
    for out in outputs:
        value = out.value or b""
        for pattern in blank:
            value = pattern.sub(rb'"\1":"-"', value)
        key = b"-" if event_ids and out.topic.endswith("events.normalised") else out.key
        compared.append((out.topic, key, out.partition, out.after_acks, value))
    return compared


def counts(registry: CollectorRegistry) -> dict[tuple[str, ...], float]:
    return {
        (sample.name, *sorted(sample.labels.items())): sample.value  # type: ignore[arg-type]
        for metric in registry.collect()
        if metric.name in ("gridhub_intake_events", "gridhub_intake_dead_letters")
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def run_both(records: list[ConsumerRecord], fresh: bool = False) -> tuple[list[Any], list[Any]]:
    """Each record through a handler on the one-pass path and one on the full path; per record, their outputs.

    `fresh`: a new pair of handlers (empty dedupe state) for every record, so none is a duplicate of another.
    """
    fast_out, full_out = [], []
    pairs = []
    for n, rec in enumerate(records):
        if fresh or n == 0:
            pairs.append((handler(True), handler(False)))
        (fast, _), (full, _) = pairs[-1]
        causes = rec.value is not None and b'"message_id"' not in rec.value
        event_ids = rec.value is not None and b'"proposed_event_id"' not in rec.value
        fast_out.append(comparable(fast.process(rec), causes, event_ids))
        full_out.append(comparable(full.process(rec), causes, event_ids))
    for (fast, fast_registry), (full, full_registry) in pairs:
        fast.sealed()
        full.sealed()
        assert counts(fast_registry) == counts(full_registry)
    return fast_out, full_out


@pytest.mark.parametrize("channel", list(DIRECT))
def test_varied_reports_give_the_same_outputs_on_both_paths(channel: Channel) -> None:
    rng = random.Random(f"direct-{channel.value}")
    records = []
    for offset in range(400):
        payload = payload_variant(channel, rng, offset)
        records.append(record(envelope_bytes(channel, payload, rng), channel, offset))
        if offset % 25 == 0:  # a retry of the report just sent: a duplicate with a new envelope
            records.append(record(envelope_bytes(channel, payload, rng), channel, offset + 1000))
    fast, full = run_both(records)
    assert fast == full
    # Most variants are still valid, so the one-pass path and event_bytes were exercised, not only the fallback.
    accepted = sum(1 for outs in fast if len(outs) == 2)
    assert accepted > 100


@pytest.mark.parametrize("channel", list(DIRECT))
def test_odd_envelopes_give_the_same_outputs_on_both_paths(channel: Channel) -> None:
    rng = random.Random(f"envelope-{channel.value}")
    payload = BASE[channel]
    own = payload[SOURCE_ID_FIELDS[channel]]
    other = next(c for c in Channel if c not in (channel, Channel.WECHAT))
    values: list[bytes | None] = [
        envelope_bytes(channel, payload, rng),
        envelope_bytes(channel, payload, rng, source=other.value),  # another channel's report on this topic
        envelope_bytes(channel, payload, rng, source="wechat"),
        envelope_bytes(channel, payload, rng, source="fax"),
        envelope_bytes(channel, payload, rng, source_id=own + "-X"),  # payload id differs
        envelope_bytes(channel, {**payload, SOURCE_ID_FIELDS[channel]: f"  {own} "}, rng),  # stripped: equal
        envelope_bytes(channel, payload, rng, source_id=""),
        envelope_bytes(channel, payload, rng, source_id="长" * 129),
        envelope_bytes(channel, payload, rng, proposed_event_id="not-a-ulid"),
        envelope_bytes(channel, payload, rng, proposed_event_id=...),
        envelope_bytes(channel, payload, rng, received_at="2026-11-20T01:31:05"),
        envelope_bytes(channel, payload, rng, received_at=1763602200),
        envelope_bytes(channel, payload, rng, message_id=...),  # the envelope's default id
        envelope_bytes(channel, payload, rng, causation_id="upstream-1"),
        envelope_bytes(channel, payload, rng, schema_version=2),
        envelope_bytes(channel, payload, rng, content_type="text/xml"),
        envelope_bytes(channel, payload, rng, surprise="extra envelope field"),
        envelope_bytes(channel, [payload], rng),
        envelope_bytes(channel, "payload", rng),
        envelope_bytes(channel, {}, rng),
        json.dumps(payload, ensure_ascii=False).encode(),  # a bare payload (Kafka-native source)
        json.dumps({**payload, SOURCE_ID_FIELDS[channel]: ""}).encode(),
        b"\xff not json",
        b"[]",
        b"",
        None,  # a tombstone
    ]
    base = envelope_bytes(channel, payload, rng).decode()
    # Duplicate keys: the last one counts, on both paths.
    values.append(base.replace('"payload": {', '"payload": {"lat": 91, "lat": 30.5, ', 1).encode())
    values.append(base.replace('"payload": {', f'"payload": {{"{SOURCE_ID_FIELDS[channel]}": "X-0", ', 1).encode())
    values.append(base.replace('{"schema_version": 1,', '{"schema_version": 1, "source": "110", ', 1).encode())
    records = [record(value, channel, offset) for offset, value in enumerate(values)]
    records.append(record(values[0], channel, 99, topic="raw.unknown"))  # a topic that is no channel's
    records.append(record(values[0], channel, 100, topic=f"raw.{other.value}"))  # another channel's topic
    fast, full = run_both(records, fresh=True)
    assert fast == full
    accepted = [n for n, outs in enumerate(fast) if len(outs) == 2]
    assert 0 in accepted and 12 in accepted  # the plain envelope, and the one without a message id
    assert len(accepted) >= 10


@pytest.mark.parametrize(
    ("channel", "fields_of"),
    [
        (Channel.HOTLINE_12345, fields_12345),
        (Channel.POLICE_110, fields_110),
        (Channel.PETITION, fields_petition),
        (Channel.GRID_APP, fields_gridapp),
    ],
)
def test_event_bytes_equal_the_models_own(channel: Channel, fields_of: Any) -> None:
    rng = random.Random(f"bytes-{channel.value}")
    model = _model(channel)
    checked = 0
    for seq in range(600):
        payload = payload_variant(channel, rng, seq)
        offset = timezone(timedelta(minutes=rng.choice([0, 480, -300, 345, 1439])))
        raw = ReportReceived(
            message_id=new_id(),
            source=channel,
            source_id=(str(payload.get(SOURCE_ID_FIELDS[channel]) or "ID-1").strip() or "ID-1")[:128],
            proposed_event_id=new_id(),
            received_at=RECEIVED.astimezone(offset).replace(microsecond=rng.choice([0, 1, 120000, 999999])),
            adapter_version="test",
            payload=payload,
        )
        try:
            parsed = parse_payload(model, raw)
        except Exception:
            continue
        fields = fields_of(raw, raw.proposed_event_id, parsed)
        if fields is None:  # a self-resolved grid report: the model path only
            continue
        assert event_bytes(fields) == event(**fields).to_bytes()
        checked += 1
    assert checked > 150


@pytest.mark.parametrize(
    ("channel", "fields_of"),
    [
        (Channel.HOTLINE_12345, fields_12345),
        (Channel.POLICE_110, fields_110),
        (Channel.PETITION, fields_petition),
        (Channel.GRID_APP, fields_gridapp),
    ],
)
def test_each_normalisers_event_dict_has_every_field_of_the_model_in_order(channel: Channel, fields_of: Any) -> None:
    payload = BASE[channel]
    raw = ReportReceived(
        source=channel,
        source_id=payload[SOURCE_ID_FIELDS[channel]],
        proposed_event_id=new_id(),
        received_at=RECEIVED,
        adapter_version="test",
        payload=payload,
    )
    fields = fields_of(raw, raw.proposed_event_id, parse_payload(_model(channel), raw))
    assert list(fields) == list(EventNormalised.model_fields)
    assert list(fields["location"]) == list(Location.model_fields)
    assert list(fields["reporter"]) == list(Reporter.model_fields)
    assert all(list(source) == list(SourceRef.model_fields) for source in fields["sources"])
    assert all(list(attached) == list(Attachment.model_fields) for attached in fields["attachments"])
    assert (channel is not Channel.GRID_APP) or fields["attachments"]


@pytest.mark.parametrize("channel", [*DIRECT, None])
def test_times_checked_in_the_core_accept_exactly_what_the_contracts_check_accepts(channel: Channel | None) -> None:
    model = _model(channel) if channel else ReportReceived
    base = BASE[channel] if channel else json.loads(envelope_bytes(Channel.HOTLINE_12345, {}, random.Random(1)))
    in_core = aware_in_core(model)
    assert in_core is not model and list(in_core.model_fields) == list(model.model_fields)
    names = [n for n, f in model.model_fields.items() if "datetime" in str(f.annotation)]
    assert names
    values = [*TIMES, "2026-11-20T09:30:00.5+08:00", "2026-11-20T09:30:00-00:00", None, "", True, ...]
    for name in names:
        for value in values:
            doc = json.dumps({k: v for k, v in {**base, name: value}.items() if v is not ...}).encode()
            outcomes = []
            for checked in (model, in_core):
                try:
                    got = checked.model_validate_json(doc)
                except ValidationError as exc:
                    outcomes.append(("refused", sorted(str(e["loc"]) for e in exc.errors())))
                else:
                    # As JSON: the same instant is not enough, the same offset too.
                    outcomes.append(("accepted", got.model_dump_json()))
            assert outcomes[0] == outcomes[1], (name, value)


def test_the_one_pass_event_is_the_full_paths_event() -> None:
    # Beyond equal bytes: the event read back is the same event (ids and times as given).
    rng = random.Random(1)
    channel = Channel.HOTLINE_12345
    value = envelope_bytes(channel, BASE[channel], rng)
    (fast, _), (full, _) = handler(True), handler(False)
    fast_event = EventNormalised.model_validate_json(fast.process(record(value, channel, 0))[0].value or b"")
    full_event = EventNormalised.model_validate_json(full.process(record(value, channel, 0))[0].value or b"")
    assert fast_event.model_dump(exclude={"message_id"}) == full_event.model_dump(exclude={"message_id"})
    assert fast_event.event_id == json.loads(value)["proposed_event_id"]


def test_every_channel_but_wechat_has_a_one_pass_path() -> None:
    assert set(DIRECT) == set(Channel) - {Channel.WECHAT}
    assert all(isinstance(d, Direct) and d.channel is c and d.label == c.value for c, d in DIRECT.items())


def test_dict_serializer_refuses_models_whose_serialisation_needs_the_instance() -> None:
    class Computed(BaseModel):
        a: int

        @computed_field  # type: ignore[prop-decorator]
        @property
        def b(self) -> int:
            return self.a + 1

    class Custom(BaseModel):
        a: int

        @field_serializer("a")
        def _a(self, value: int) -> str:
            return str(value)

    for model in (Computed, Custom):
        with pytest.raises(ValueError):
            dict_serializer(model)
    # A plain model: its own bytes.
    assert dict_serializer(SourceRef).to_json(
        {"source": Channel.POLICE_110, "source_id": '引号"', "raw_message_id": "m"}
    ) == (SourceRef(source=Channel.POLICE_110, source_id='引号"', raw_message_id="m").model_dump_json().encode())
