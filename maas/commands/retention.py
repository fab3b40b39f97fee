"""The capture topics' retention (``maas models monitor --retention``): set on the topics."""

from __future__ import annotations

import asyncio

from producer.contract.tenancy import Namespace
from producer.kafka import KafkaSettings, ensure_topics


def set_capture_retention(kafka: KafkaSettings, retention_ms: int) -> list[str]:
    """Set ``retention.ms`` on every capture topic (the default tenant's and each
    tenant's that exists); return their names."""
    return asyncio.run(_set(kafka, retention_ms))


async def _set(kafka: KafkaSettings, retention_ms: int) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    await ensure_topics(kafka)
    admin = AIOKafkaAdminClient(**kafka.common())
    await admin.start()
    try:
        prefix = kafka.topics.prefix
        topics = sorted(
            t
            for t in await admin.list_topics()
            if t == kafka.topics.capture or _is_tenant_capture(prefix, t)
        )
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, t, configs={"retention.ms": str(retention_ms)})
            for t in topics
        ]
        for response in await admin.alter_configs(resources):
            for result in getattr(response, "resources", []):
                code, message = result[0], result[1]
                if code:
                    raise RuntimeError(f"the broker refused: {message} (code {code})")
        return topics
    finally:
        await admin.close()


def _is_tenant_capture(prefix: str, topic: str) -> bool:
    if not topic.startswith(prefix) or not topic.endswith(".capture"):
        return False
    tenant = topic[len(prefix) : -len(".capture")]
    try:
        return Namespace(prefix, tenant).capture == topic
    except ValueError:
        return False
