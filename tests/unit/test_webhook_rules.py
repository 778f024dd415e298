"""Webhook rules without I/O: which targets are allowed, filters, backoff, signatures."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks import Webhook

from classifier.config import ClassifierSettings
from classifier.models import WebhookSubscription
from classifier.webhooks.delivery import backoff, retry_after, signature
from classifier.webhooks.schemas import ChangeFilter, new_secret
from classifier.webhooks.targets import TargetPolicy, TargetRefused


def policy(**settings: object) -> TargetPolicy:
    return TargetPolicy.of(ClassifierSettings.model_validate(settings))


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://10.0.0.8/",
        "https://192.168.1.1/",
        "https://100.64.0.1/",  # carrier-grade NAT: not global
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "https://localhost/",
        "https://metadata.google.internal/",
        "http://example.com/",
        "ftp://example.com/",
        "https://user:pw@example.com/",
        "https://example.com:99999/",
        "example.com/hook",
    ],
)
def test_targets_inside_or_not_https_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        policy().check_url(url)


def test_public_https_passes() -> None:
    assert policy().check_url("https://hooks.example.com/x?y=1") == (
        "https",
        "hooks.example.com",
        443,
    )
    assert policy().check_url("https://93.184.215.14:8443/")[2] == 8443


def test_the_allowlist_admits_loopback_over_http_by_name_address_or_network() -> None:
    assert policy(webhook_allow_hosts="127.0.0.1").check_url("http://127.0.0.1:8080/")
    assert policy(webhook_allow_hosts="127.0.0.0/8").check_url("http://127.0.0.2/")
    assert policy(webhook_allow_hosts="localhost").check_url("http://localhost:9/")
    with pytest.raises(TargetRefused):  # the network of another address
        policy(webhook_allow_hosts="10.0.0.0/8").check_url("http://127.0.0.1/")


def test_allow_private_admits_private_networks_only_over_https() -> None:
    private = policy(webhook_allow_private=True)
    private.check_address("h", ipaddress.ip_address("10.1.2.3"))
    private.check_address("h", ipaddress.ip_address("fd00::1"))
    for inside in ("127.0.0.1", "169.254.169.254", "::1", "fe80::1", "0.0.0.0"):
        with pytest.raises(TargetRefused):
            private.check_address("h", ipaddress.ip_address(inside))
    with pytest.raises(TargetRefused):
        private.check_url("http://10.1.2.3/")


async def test_the_transport_refuses_before_connecting() -> None:
    """The address is checked at connect time, for every request (no DNS rebinding)."""
    from classifier.webhooks.targets import PinnedTransport

    async with httpx.AsyncClient(transport=PinnedTransport(policy())) as client:
        with pytest.raises(TargetRefused):
            await client.post("https://169.254.169.254/latest")
        with pytest.raises(TargetRefused, match="not a public address"):
            await client.post("https://localhost:1/")  # resolved: 127.0.0.1 / ::1
        with pytest.raises(TargetRefused, match="https"):
            await client.post("http://example.com/")


def change(dimension: str, old: str | None, new: str, reason: str = "event") -> dict[str, object]:
    return {"dimension": dimension, "old_class": old, "new_class": new, "reason": reason}


def test_filters_match_dimension_classes_entered_or_left_and_reasons() -> None:
    entering_a = ChangeFilter(dimensions=["abc_tier"], entered=["A"])
    assert entering_a.matches(change("abc_tier", None, "A"))
    assert entering_a.matches(change("abc_tier", "B", "A"))
    assert not entering_a.matches(change("abc_tier", "A", "B"))
    assert not entering_a.matches(change("value", "low", "A"))
    leaving_a = ChangeFilter(left=["A"])
    assert leaving_a.matches(change("abc_tier", "A", "B"))
    assert not leaving_a.matches(change("abc_tier", None, "A"))
    by_reason = ChangeFilter.model_validate({"reasons": ["time"]})
    assert by_reason.matches(change("x", "a", "b", "time"))
    assert not by_reason.matches(change("x", "a", "b", "event"))
    assert ChangeFilter().matches(change("anything", None, "z"))


def test_backoff_follows_the_schedule_with_jitter_then_ends() -> None:
    settings = ClassifierSettings()
    schedule = settings.webhook_retry_schedule_seconds
    assert 20 * 3600 <= sum(schedule) <= 28 * 3600  # about a day
    for attempt, base in enumerate(schedule, start=1):
        wait = backoff(settings, attempt)
        assert wait is not None
        assert base * 0.8 <= wait <= base * 1.2
    assert backoff(settings, len(schedule) + 1) is None


def test_retry_after_reads_seconds_and_dates() -> None:
    def answer(value: str) -> httpx.Response:
        return httpx.Response(503, headers={"retry-after": value})

    assert retry_after(answer("120")) == 120
    later = (datetime.now(UTC) + timedelta(seconds=60)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 50 <= (retry_after(answer(later)) or 0) <= 61
    assert retry_after(answer("soon")) is None
    assert retry_after(httpx.Response(503)) is None


def test_during_the_rotation_overlap_both_secrets_sign() -> None:
    old, new = new_secret(), new_secret()
    now = datetime.now(UTC)
    subscription = WebhookSubscription(
        id=uuid.uuid4(),
        secret=new,
        previous_secret=old,
        previous_expires_at=now + timedelta(hours=1),
    )
    body = '{"a":1}'
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature(subscription, "msg_1", now, body),
    }
    assert Webhook(old).verify(body, headers) == {"a": 1}
    assert Webhook(new).verify(body, headers) == {"a": 1}
    subscription.previous_expires_at = now - timedelta(seconds=1)
    assert len(signature(subscription, "msg_1", now, body).split()) == 1
