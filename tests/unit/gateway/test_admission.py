"""Per-tenant limits, auth and the status of each error, without a broker."""

from __future__ import annotations

import pytest

from workers.gateway.auth import Authenticator
from workers.gateway.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    NoAnswer,
    NotFound,
    TooLarge,
    TooManyRequests,
    Unauthenticated,
    from_code,
)
from workers.gateway.limits import Admission
from workers.gateway.service import Target
from workers.gateway.settings import Limits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_concurrency_is_per_tenant_and_places_come_back() -> None:
    admission = Admission(Limits(concurrency=1, rate=0))
    with admission.admit("acme"):
        with pytest.raises(TooManyRequests) as refused, admission.admit("acme"):
            pass
        with admission.admit("beta"), admission.admit(None):
            assert admission.in_flight("beta") == 1
    assert refused.value.retry_after_s == 1 and "acme" in str(refused.value)
    with admission.admit("acme"):
        assert admission.in_flight("acme") == 1
    assert admission.in_flight("acme") == 0


def test_the_rate_refills_and_says_when_to_retry() -> None:
    clock = Clock()
    admission = Admission(Limits(concurrency=0, rate=0.5, burst=2), clock=clock)
    for _ in range(2):
        with admission.admit("acme"):
            pass
    with pytest.raises(TooManyRequests) as refused, admission.admit("acme"):
        pass
    assert refused.value.retry_after_s == 2
    clock.now += 2.0
    with admission.admit("acme"):
        pass


@pytest.mark.parametrize(
    ("code", "kind", "status"),
    [
        ("INVALID_INPUT", BadRequest, 400),
        ("UNAUTHORIZED", Forbidden, 403),
        ("MODEL_NOT_FOUND", NotFound, 404),
        ("VERSION_NOT_FOUND", NotFound, 404),
        ("TOO_LARGE", TooLarge, 413),
        ("EXPIRED", NoAnswer, 504),
        ("INTERNAL", GatewayError, 500),
        ("SOMETHING_NEW", GatewayError, 500),
    ],
)
def test_worker_codes_map_to_statuses(code: str, kind: type[GatewayError], status: int) -> None:
    error = from_code(code, "why")
    assert type(error) is kind and error.status == status and str(error) == "why"


class Tokens:
    def __init__(self) -> None:
        self.known = {"good": "acme"}
        self.asked = 0

    def tenant_of(self, token: str) -> str | None:
        self.asked += 1
        return self.known.get(token)


async def test_tokens_name_the_tenant_and_answers_are_cached() -> None:
    tokens = Tokens()
    auth = Authenticator(tokens, allow_anonymous=False, ttl_s=60)
    assert (await auth.caller("Bearer good")).tenant == "acme"
    assert (await auth.caller("bearer  good ")).tenant == "acme"
    assert tokens.asked == 1
    for header in (None, "", "Bearer", "Basic good", "Bearer bad"):
        with pytest.raises(Unauthenticated):
            await auth.caller(header)
    anonymous = Authenticator(tokens, allow_anonymous=True, ttl_s=0)
    assert (await anonymous.caller(None)).tenant is None
    with pytest.raises(Unauthenticated):
        await anonymous.caller("Bearer bad")  # a bad token is refused even so


@pytest.mark.parametrize(
    ("model", "version", "which"),
    [("digits", None, "production"), ("digits", "3", 3), ("digits", "staging", "staging")],
)
def test_paths_name_a_version_or_an_alias(model: str, version: str | None, which: object) -> None:
    assert Target.parse(model, version) == Target(model, which)  # type: ignore[arg-type]


def test_a_name_no_model_can_have_is_404() -> None:
    with pytest.raises(NotFound):
        Target.parse("-bad", None)
