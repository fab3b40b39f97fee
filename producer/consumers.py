"""Who consumes a topic: the members of a consumer group, as the admin client sees them.

``maas retrain`` asks before it publishes: a job that no trainer will read would be
waited for in vain, then trained, unasked, by the next trainer to start.
"""

from __future__ import annotations

import structlog

from producer.kafka import KafkaSettings

log = structlog.get_logger(__name__)

# The trainers' consumer group (``maas trainer --group-id``'s default).
TRAINER_GROUP = "maas-trainers"
_GROUP_AUTHORIZATION_FAILED = 30


async def group_members(settings: KafkaSettings, group: str) -> int | None:
    """How many members ``group`` has now (0: none, or no such group); None when the
    broker does not say (this principal may not describe the group, say)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(**settings.common())
    try:
        await admin.start()
        (response,) = await admin.describe_consumer_groups([group])
    except KafkaError as exc:
        log.debug("consumer group not described", group=group, error=repr(exc))
        return None
    finally:
        await admin.close()
    for error_code, name, state, *_, members in (g[:6] for g in response.groups):
        if name != group:
            continue
        if error_code == _GROUP_AUTHORIZATION_FAILED:
            return None
        return 0 if error_code or state in ("Dead", "Empty") else len(members)
    return 0
