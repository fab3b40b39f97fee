"""Tenants as topic namespaces: the names of a tenant's topics, and the tenant of a topic.

Tenant ``acme`` uses ``maas.acme.predict``, ``maas.acme.results`` and
``maas.acme.retrain`` (under the default prefix); the default tenant (``None``) keeps
``maas.predict``, ``maas.results`` and ``maas.retrain``, so clients that know nothing
of tenants keep working. ``maas.control`` and ``maas.dlq`` are the service's own and
belong to no tenant. A job's tenant is the topic it came from
(:func:`tenant_of_topic`), never a field of the job.

The rule for tenant names is :mod:`producer.contract.names`', shared with the registry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from producer.contract.names import TOPIC_WORDS, InvalidName, check_tenant_name

# The topics a tenant's clients write jobs to.
JOB_TOPIC_WORDS = ("predict", "retrain")
# The monitoring topics: workers write captures, a tenant's clients write feedback, and
# the monitor reads both for every tenant.
MONITOR_TOPIC_WORDS = ("capture", "feedback")
# A tenant's name as one part of a topic name.
_TENANT_PART = r"[a-z0-9][a-z0-9-]{0,62}"

InvalidTenant = InvalidName
check_tenant = check_tenant_name


@dataclass(frozen=True, slots=True)
class Namespace:
    """One tenant's topics under ``prefix``; ``tenant`` None is the default tenant."""

    prefix: str
    tenant: str | None = None

    def __post_init__(self) -> None:
        if self.tenant is not None:
            check_tenant(self.tenant)

    @property
    def stem(self) -> str:
        """What every topic of this namespace starts with: ``maas.`` or ``maas.acme.``."""
        return self.prefix if self.tenant is None else f"{self.prefix}{self.tenant}."

    @property
    def predict(self) -> str:
        return f"{self.stem}predict"

    @property
    def retrain(self) -> str:
        return f"{self.stem}retrain"

    @property
    def results(self) -> str:
        return f"{self.stem}results"

    @property
    def capture(self) -> str:
        return f"{self.stem}capture"

    @property
    def feedback(self) -> str:
        return f"{self.stem}feedback"

    def owns_reply_topic(self, topic: str) -> bool:
        """Whether a job of this tenant may name ``topic`` as its ``reply_to``: for a
        named tenant its results topic or one under ``<results>.``; for the default
        tenant also any topic that is not one of the service's own (no tenant's topics,
        no job topic, no ``control``, ``dlq``, ``capture`` or ``feedback``)."""
        if topic == self.results or topic.startswith(f"{self.results}."):
            return True
        return self.tenant is None and not is_service_topic(self.prefix, topic)


def tenant_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The tenant a client acts for: ``MAAS_TENANT`` (checked), or None (unset or
    empty: the default tenant). Raises :class:`InvalidTenant` for a name that breaks
    the rule."""
    name = (os.environ if env is None else env).get("MAAS_TENANT", "").strip()
    return check_tenant(name) if name else None


def tenant_of_topic(prefix: str, topic: str) -> str | None:
    """The tenant whose job, results, capture or feedback topic ``topic`` is (None: the
    default tenant's, or not a tenant topic at all: see :func:`is_service_topic`)."""
    match = _tenant_topic(prefix).fullmatch(topic)
    if match is None or match.group(1) in TOPIC_WORDS:
        return None
    return match.group(1)


def is_service_topic(prefix: str, topic: str) -> bool:
    """Whether ``topic`` is one of maas's own: a topic word under the prefix, any
    tenant's job or results topic, or anything under a tenant's results topic."""
    if not topic.startswith(prefix):
        return False
    rest = topic[len(prefix) :]
    word = rest.split(".", 1)[0]
    if word in TOPIC_WORDS:
        return True
    words = "predict|retrain|results|capture|feedback"
    return re.fullmatch(rf"{_TENANT_PART}\.({words})(\..*)?", rest) is not None


def job_topic_pattern(prefix: str, word: str) -> str:
    """A regular expression matching the default tenant's and every tenant's ``word``
    topic (``predict`` or ``retrain``): what a worker subscribes to, so a new tenant's
    topic is picked up without a restart."""
    if word not in (*JOB_TOPIC_WORDS, *MONITOR_TOPIC_WORDS):
        words = ", ".join((*JOB_TOPIC_WORDS, *MONITOR_TOPIC_WORDS))
        raise ValueError(f"{word!r} is not a job or monitoring topic word ({words})")
    return rf"^{re.escape(prefix)}(?:{_TENANT_PART}\.)?{word}$"


def monitor_topic_pattern(prefix: str) -> str:
    """A regular expression matching every tenant's capture and feedback topics: what
    the monitor subscribes to."""
    return rf"^{re.escape(prefix)}(?:{_TENANT_PART}\.)?(?:capture|feedback)$"


def _tenant_topic(prefix: str) -> re.Pattern[str]:
    return re.compile(
        rf"{re.escape(prefix)}({_TENANT_PART})\.(?:predict|retrain|results|capture|feedback)"
    )
