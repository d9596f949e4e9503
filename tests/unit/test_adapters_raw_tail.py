"""Raw records read back at start: which become provisional acceptances, and which are left alone."""

from __future__ import annotations

from types import SimpleNamespace

from gridhub.kernel.settings import CommonSettings
from services.adapters.raw_tail import RawTail, pending_acceptance
from services.adapters.report_index import ReportIndex


def test_a_raw_report_gives_its_dedupe_key_and_proposed_id() -> None:
    value = b'{"source":"12345","source_id":"A-1","proposed_event_id":"01KAFZ0M3DY89XFXAKDNGGSZDK","payload":{}}'
    assert pending_acceptance(b"12345:A-1", value) == ("12345:A-1", "01KAFZ0M3DY89XFXAKDNGGSZDK")


def test_tombstones_junk_and_records_without_an_id_are_skipped() -> None:
    assert pending_acceptance(None, b"{}") is None
    assert pending_acceptance(b"12345:A-1", None) is None
    assert pending_acceptance(b"12345:A-1", b"not json") is None
    assert pending_acceptance(b"12345:A-1", b"[1, 2]") is None
    assert pending_acceptance(b"12345:A-1", b'{"proposed_event_id": ""}') is None
    assert pending_acceptance(b"\xff\xfe", b'{"proposed_event_id": "01K"}') is None


def test_the_first_record_of_a_key_wins_and_an_indexed_key_is_left_to_the_index() -> None:
    index = ReportIndex(":memory:", provisional_ttl_s=120)
    index.apply([("12345:OLD", "01INDEXED")])
    tail = RawTail(CommonSettings(), index, monotonic=lambda: 1000.0)

    def record(key: str, event_id: str) -> SimpleNamespace:
        return SimpleNamespace(key=key.encode(), value=f'{{"proposed_event_id": "{event_id}"}}'.encode())

    for r in (record("12345:NEW", "01FIRST"), record("12345:NEW", "01SECOND"), record("12345:OLD", "01RAW")):
        tail._remember(r)
    assert index.lookup("12345:NEW", 1000.0) == "01FIRST"  # a repeat published later never replaces the first
    assert index.lookup("12345:OLD", 1000.0) == "01INDEXED"
    assert tail.remembered == 1
    assert index.lookup("12345:NEW", 1000.0 + 121) is None  # provisional, as the replica's own acceptances
    index.close()
