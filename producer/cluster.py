"""What the cluster says of itself, asked with the admin client before a client sends.

- Who consumes: the members of a consumer group. ``maas retrain`` asks before it
  publishes: a job that no trainer reads would be waited for in vain, then trained,
  unasked, by the next trainer to start.
- Whether a tenant exists: its topics do (``maas tenants add`` creates them). A
  tenant's client asks at start, so that a misspelt tenant is said at once; listing
  topics creates none, where a consumer's metadata request may (auto.create.topics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from producer.errors import UnknownTenant

if TYPE_CHECKING:
    from producer.contract.tenancy import Namespace
    from producer.kafka import KafkaSettings

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
        import structlog

        structlog.get_logger(__name__).debug("group not described", group=group, error=repr(exc))
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


async def require_tenant(settings: KafkaSettings, namespace: Namespace) -> None:
    """Raise :class:`UnknownTenant` unless ``namespace``'s tenant (if any) has its topics."""
    if namespace.tenant is None:
        return
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.common())
    try:
        await admin.start()
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    if namespace.results not in topics:
        raise UnknownTenant(namespace.tenant, namespace.results, settings.bootstrap_servers)
