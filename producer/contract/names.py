"""The rules for names on the wire and in the registry: one copy, imported by both.

Model names, aliases, job ids, tenant names and Kafka principals are bounded by the
widths of the registry's columns (``NAME_MAX_LENGTH`` characters on every database) and
by the patterns below. The messages (:mod:`producer.contract.messages`) bound the same
fields with the same numbers, so a name a job may carry is one the registry can store;
the registry checks what it writes with these functions and raises its own
``InvalidName`` from them.
"""

from __future__ import annotations

import re

from producer.contract.errors import ContractError

NAME_MAX_LENGTH = 200  # model names, job ids, actors: the width of their columns
ALIAS_MAX_LENGTH = 100
VERSION_MAX = 2**31 - 1  # versions are 32-bit integers on every database
TENANT_NAME_MAX_LENGTH = 63
PRINCIPAL_MAX_LENGTH = 200  # a Kafka principal, ``User:acme``

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z"
# Job ids are the client's: any printable text, no control characters.
JOB_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+\Z"
TENANT_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}\Z"
# The words after the prefix that name the service's topics: tenant names become topic
# names (maas.<tenant>.predict), so no tenant may be one of them.
TOPIC_WORDS = frozenset({"predict", "retrain", "results", "control", "dlq"})

# A Kafka principal: its type, a colon, a name without control characters, spaces, or
# the wildcard ``*`` (which would grant a tenant's topics to every user).
PRINCIPAL_PATTERN = r"^[A-Za-z][A-Za-z0-9]*:[^\x00-\x20\x7f-\x9f*]+\Z"

_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
_JOB_ID = re.compile(JOB_ID_PATTERN)
_TENANT_NAME = re.compile(TENANT_NAME_PATTERN)
_PRINCIPAL = re.compile(PRINCIPAL_PATTERN)
_MODEL_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit"


class InvalidName(ContractError):
    """A name that breaks one of the rules above; the message says which rule."""


def check_model_name(name: str) -> str:
    """``name`` if it may name a model (or an alias); else :class:`InvalidName`."""
    return _check("model name", name, _MODEL_NAME, NAME_MAX_LENGTH, _MODEL_RULE)


def check_alias(alias: str) -> str:
    """``alias`` if it may name an alias; else :class:`InvalidName`."""
    return _check("alias", alias, _MODEL_NAME, ALIAS_MAX_LENGTH, _MODEL_RULE)


def check_job_id(job_id: str) -> str:
    """``job_id`` if a retraining run may be recorded under it; else :class:`InvalidName`."""
    return _check("job id", job_id, _JOB_ID, NAME_MAX_LENGTH, "no control characters")


def check_tenant_name(name: str) -> str:
    """``name`` if it may name a tenant; else :class:`InvalidName`."""
    _check(
        "tenant name",
        name,
        _TENANT_NAME,
        TENANT_NAME_MAX_LENGTH,
        "lower-case letters, digits and '-', starting with a letter or digit",
    )
    if name in TOPIC_WORDS:
        raise InvalidName(
            f"tenant name {name!r} is a topic word; choose one that is none of "
            f"{', '.join(sorted(TOPIC_WORDS))}"
        )
    return name


def check_principal(principal: str) -> str:
    """``principal`` if it may name a tenant's Kafka principal; else :class:`InvalidName`."""
    return _check(
        "Kafka principal",
        principal,
        _PRINCIPAL,
        PRINCIPAL_MAX_LENGTH,
        "TYPE:NAME such as User:acme, no spaces, control characters or '*'",
    )


def _check(what: str, value: str, pattern: re.Pattern[str], limit: int, rule: str) -> str:
    if not 1 <= len(value) <= limit:
        raise InvalidName(f"a {what} has 1 to {limit} characters, got {len(value)}")
    if pattern.match(value) is None:
        raise InvalidName(f"{what} {value[:80]!r} is not allowed: use {rule}")
    return value
