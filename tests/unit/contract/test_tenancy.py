"""Tenant namespaces: topic names, the tenant of a topic, where a tenant may be answered."""

from __future__ import annotations

import re

import pytest

from producer.contract.tenancy import (
    InvalidTenant,
    Namespace,
    check_tenant,
    is_service_topic,
    job_topic_pattern,
    tenant_of_topic,
)


def test_the_default_tenant_keeps_todays_topics() -> None:
    default = Namespace("maas.")
    assert (default.predict, default.results, default.retrain) == (
        "maas.predict",
        "maas.results",
        "maas.retrain",
    )
    acme = Namespace("maas.", "acme")
    assert (acme.predict, acme.results, acme.retrain) == (
        "maas.acme.predict",
        "maas.acme.results",
        "maas.acme.retrain",
    )


@pytest.mark.parametrize("name", ["", "Acme", "-x", "a" * 64, "a_b", "predict", "dlq", "a.b"])
def test_bad_tenant_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidTenant, match="tenant name"):
        check_tenant(name)
    with pytest.raises(InvalidTenant):
        Namespace("maas.", name)


def test_a_topic_names_its_tenant() -> None:
    assert tenant_of_topic("maas.", "maas.acme.predict") == "acme"
    assert tenant_of_topic("maas.", "maas.acme.results") == "acme"
    assert tenant_of_topic("maas.", "maas.predict") is None
    assert tenant_of_topic("maas.", "maas.acme.control") is None
    assert tenant_of_topic("maas.", "other.acme.predict") is None
    assert tenant_of_topic("maas.", "maas.results.predict") is None


def test_the_job_pattern_matches_every_tenant_and_nothing_else() -> None:
    pattern = re.compile(job_topic_pattern("maas.", "predict"))
    assert pattern.match("maas.predict")
    assert pattern.match("maas.acme.predict")
    assert not pattern.match("maas.acme.results")
    assert not pattern.match("maasXpredict")
    assert not pattern.match("maas.a.b.predict")
    with pytest.raises(ValueError, match="not a job or monitoring topic word"):
        job_topic_pattern("maas.", "results")


def test_reply_topics_stay_in_the_namespace() -> None:
    acme = Namespace("maas.", "acme")
    assert acme.owns_reply_topic("maas.acme.results")
    assert acme.owns_reply_topic("maas.acme.results.batch-7")
    assert not acme.owns_reply_topic("maas.acme.resultsx")
    assert not acme.owns_reply_topic("maas.results")
    assert not acme.owns_reply_topic("maas.beta.results")
    assert not acme.owns_reply_topic("team-topic")
    default = Namespace("maas.")
    assert default.owns_reply_topic("maas.results")
    assert default.owns_reply_topic("maas.results.mine")
    assert default.owns_reply_topic("team-topic")
    for internal in (
        "maas.control",
        "maas.dlq",
        "maas.predict",
        "maas.acme.results",
        "maas.retrain",
    ):
        assert is_service_topic("maas.", internal)
        assert not default.owns_reply_topic(internal)


def test_capture_and_feedback_are_topic_words_and_service_topics() -> None:
    acme = Namespace("maas.", "acme")
    assert (acme.capture, acme.feedback) == ("maas.acme.capture", "maas.acme.feedback")
    assert tenant_of_topic("maas.", "maas.acme.feedback") == "acme"
    assert tenant_of_topic("maas.", "maas.feedback") is None
    for topic in ("maas.capture", "maas.feedback", "maas.acme.capture", "maas.acme.feedback"):
        assert is_service_topic("maas.", topic)
        assert not Namespace("maas.").owns_reply_topic(topic)  # not a default reply_to
    for word in ("capture", "feedback"):
        with pytest.raises(InvalidTenant, match="topic word"):
            check_tenant(word)
    assert re.compile(job_topic_pattern("maas.", "feedback")).match("maas.acme.feedback")
