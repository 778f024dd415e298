"""`python -m classifier.topics`: create the topics with the configured partition counts."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from classifier.config import ClassifierSettings

log = logging.getLogger(__name__)


def wanted_topics(settings: ClassifierSettings) -> dict[str, int]:
    return {
        settings.activity_topic: settings.activity_partitions,
        settings.class_changes_topic: settings.class_changes_partitions,
        settings.dlq_topic: settings.dlq_partitions,
    }


async def ensure_topics(settings: ClassifierSettings, topics: dict[str, int] | None = None) -> None:
    """Create missing topics (replicas: `topic_replication_factor`, 1 for the local broker)."""
    topics = topics or wanted_topics(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        replicas = settings.topic_replication_factor
        new = [NewTopic(name, n, replicas) for name, n in topics.items() if name not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            log.info("created topics %s", [t.name for t in new])
    finally:
        await admin.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(ensure_topics(ClassifierSettings()))


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of `topic`, from fresh broker metadata.

    A consumer's own metadata cache only knows topics it subscribed to, and
    may know part of one; reading "all partitions" from it can silently miss
    some. Raises when the topic does not exist.
    """
    metadata = await consumer._client.fetch_all_metadata()
    partitions = metadata.partitions_for_topic(topic)
    if not partitions:
        raise LookupError(f"topic {topic!r} does not exist")
    return [TopicPartition(topic, p) for p in sorted(partitions)]
