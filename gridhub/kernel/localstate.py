"""Checks shared by workers that keep a partition's state in a local file next to the input offsets it reflects."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition

# Tansu's end offset may lag behind its last batch (it can fall inside it): a file a few records ahead proves
# nothing; an empty topic, or one this far behind, does.
AHEAD_BY_MORE_THAN = 10_000
log = logging.getLogger(__name__)


async def ahead_of_topics(consumer: Any, offsets: Mapping[str, int], partition: int) -> bool:
    """Whether a partition's file has read further than its topics hold (they were recreated: an embedded broker's
    memory storage, a new cluster), so what it describes is gone and it must be rebuilt."""
    if not offsets:
        return False
    tps = [TopicPartition(topic, partition) for topic in offsets]
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    return any(
        offsets[tp.topic] > ends.get(tp, 0)
        and (ends.get(tp, 0) == 0 or offsets[tp.topic] - ends[tp] > AHEAD_BY_MORE_THAN)
        for tp in tps
    )


async def stale_file(consumer: Any | None, offsets: Mapping[str, int], partition: int, what: str) -> bool:
    """`ahead_of_topics`, logged as a rebuild of `what` (False while the worker has no consumer yet)."""
    if consumer is None:
        return False
    stale = await ahead_of_topics(consumer, offsets, partition)
    if stale:
        log.warning("%s is ahead of its topics (recreated?); rebuilding", what, extra={"partition": partition})
    return stale


async def seek_to_offsets(
    consumer: Any | None, topics: Iterable[str], partition: int, offsets: Mapping[str, int]
) -> None:
    """Point the consumer at partition p of each topic where its local file stopped reading (its start when the
    file has no offset for it: nothing of it was read yet). No consumer (tests): nothing to do."""
    if consumer is None:
        return
    for topic in topics:
        tp = TopicPartition(topic, partition)
        if topic in offsets:
            consumer.seek(tp, offsets[topic])
        else:
            await consumer.seek_to_beginning(tp)
