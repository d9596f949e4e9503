"""The JSON channels the adapters accept, and the rule every channel's own id follows; pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gridhub import __version__
from schemas import Channel
from schemas.raw import SOURCE_ID_FIELDS

ADAPTER_VERSION = f"gridhub-adapters/{__version__}"


# A channel's own id becomes part of the Kafka key: letters, digits and a few separators, no spaces.
SOURCE_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.:/-]{0,63}$")
SOURCE_ID_RULE_ZH = "必填，1-64 位字母、数字或 _ . : / -，以字母或数字开头"

# The raw envelope's serialiser (pydantic) stops at about 255 levels; a 300-deep payload parsed fine but then
# failed to publish (a 500). No real report nests beyond a handful, so the envelope check stops far below it.
MAX_JSON_DEPTH = 64
TOO_DEEP_ZH = f"JSON 嵌套超过 {MAX_JSON_DEPTH} 层"


def too_deep(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when parsed JSON nests objects or arrays more than `limit` levels deep (the top level is 1)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:  # iterative: the value may nest nearly as deep as json.loads could recurse
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


@dataclass(frozen=True)
class JsonChannel:
    """A channel that POSTs JSON: its route, the field holding its own id, and how the API documents it."""

    channel: Channel
    path: str
    id_field: str
    id_label_zh: str
    tag: str
    summary: str
    description: str
    invalid: str

    def source_id_in(self, body: dict[str, Any]) -> str | None:
        """The channel's own id in a report body, or None when it is missing or not a valid id."""
        source_id = body.get(self.id_field)
        return source_id if isinstance(source_id, str) and SOURCE_ID.fullmatch(source_id) else None

    @property
    def missing_id_zh(self) -> str:
        """What an operator reads when a report lacks a valid id."""
        return f"缺少或无效的{self.id_label_zh} {self.id_field}。"


# The envelope is checked here (JSON object with the channel's id); intake validates the payload in full.
JSON_CHANNELS = (
    JsonChannel(
        Channel.HOTLINE_12345,
        "/v1/12345/work-orders",
        SOURCE_ID_FIELDS[Channel.HOTLINE_12345],
        "工单编号",
        "12345 hotline",
        "Receive one 12345 work order (工单)",
        "Accept a work order as the hotline sends it; intake validates it in full.",
        "Not a work order",
    ),
    JsonChannel(
        Channel.POLICE_110,
        "/v1/110/incidents",
        SOURCE_ID_FIELDS[Channel.POLICE_110],
        "警情编号",
        "110 police dispatch",
        "Receive one non-police incident handed on by 110 (非警务警情移交)",
        "Accept an incident the 110 command system hands on; urgent ones get the 2-hour class downstream.",
        "Not an incident",
    ),
    JsonChannel(
        Channel.PETITION,
        "/v1/petitions",
        SOURCE_ID_FIELDS[Channel.PETITION],
        "信访件编号",
        "petitions",
        "Receive one petition case (信访件)",
        "Accept a petition registered by the 信访 system; the petitioner is confidential from here on.",
        "Not a petition case",
    ),
    JsonChannel(
        Channel.GRID_APP,
        "/v1/gridapp/reports",
        SOURCE_ID_FIELDS[Channel.GRID_APP],
        "上报编号",
        "grid app",
        "Receive one grid worker's report (网格上报), photos as URLs",
        "Accept a grid worker's report; one marked self_resolved is recorded and counted, not dispatched.",
        "Not a grid report",
    ),
)


def channel_spec(channel: Channel) -> JsonChannel:
    """The JSON channel description of a channel; KeyError names the ones there are."""
    for spec in JSON_CHANNELS:
        if spec.channel is channel:
            return spec
    raise KeyError(f"{channel.value} is not a JSON channel; these are: {[s.channel.value for s in JSON_CHANNELS]}")
