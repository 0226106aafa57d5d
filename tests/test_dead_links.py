"""No dead links: a message is not sent when its recovery URL or its offer dies within the
tenant's ``[links] margin`` (default 1 h), and an expired ``/r/`` link sends the customer to the
shop's ``fallback_url``. Tested at the edges: exactly at the margin, one second either side."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_config import load, write
from test_engine import T0, TENANT, Sim

from hub.engine import link_serializer
from hub.plugins import load_plugins

STEP0 = T0 + timedelta(hours=1)  # the default flow's first step
STEP1 = T0 + timedelta(hours=24)  # its second, with the COMEBACK10 offer


@pytest.fixture
def sim(hub_factory, tmp_path):
    def make(extra: str = "", offer: str = "") -> Sim:
        text = TENANT.format(policy="opt_in", extra=extra, outbox=tmp_path / "outbox")
        if offer:
            text = text.replace(
                'promo_code = "COMEBACK10" }', f'promo_code = "COMEBACK10", {offer} }}'
            )
        return Sim(hub_factory({"acme": text}))

    return make


def first_step(s: Sim) -> object:
    return min(s.steps(), key=lambda r: r.step_index)


@pytest.mark.parametrize(
    ("expires", "sent"),
    [
        (STEP0 + timedelta(hours=1), False),  # exactly at the margin: within it
        (STEP0 + timedelta(hours=1) - timedelta(seconds=1), False),
        (STEP0 + timedelta(hours=1, seconds=1), True),
        (None, True),
    ],
)
def test_a_recovery_url_that_dies_within_the_margin_is_not_sent(sim, expires, sent):
    s = sim()
    s.event(recovery_expires_at=expires)
    s.run_until(STEP0)
    assert (len(s.sent) == 1) is sent
    if not sent:
        step = first_step(s)
        assert step.status == "skipped"
        assert step.reason.startswith("recovery URL expires within 1h")


def test_an_already_expired_recovery_url_says_expired(sim):
    s = sim()
    s.event(recovery_expires_at=STEP0 - timedelta(seconds=1))
    s.run_until(STEP0)
    assert s.sent == [] and first_step(s).reason == "recovery URL expired"


def test_the_margin_is_the_tenants(sim):
    s = sim(extra='[links]\nmargin = "30m"')
    s.event(recovery_expires_at=STEP0 + timedelta(minutes=30, seconds=1))
    s.run_until(STEP0)
    assert len(s.sent) == 1
    s.event(
        checkout="cs_2",
        email="max@example.com",
        recovery_expires_at=s.now + timedelta(hours=1, minutes=30),
    )
    s.run_until(s.now + timedelta(hours=1))
    assert first_step_of(s, 2).reason.startswith("recovery URL expires within 30m")


def first_step_of(s: Sim, journey_id: int) -> object:
    return next(r for r in s.steps() if r.journey_id == journey_id and r.step_index == 0)


@pytest.mark.parametrize(
    ("offer", "sent"),
    [
        ('valid_for = "25h"', False),  # dies exactly one margin after the step fires
        ('valid_for = "89999s"', False),  # one second inside
        ('valid_for = "90001s"', True),  # one second outside
        ('expires_at = "2026-06-02T11:00:00Z"', False),  # T0 + 25h, exactly at the margin
        ('expires_at = "2026-06-02T11:00:01Z"', True),
    ],
)
def test_an_offer_that_dies_within_the_margin_is_not_sent(sim, offer, sent):
    s = sim(offer=offer)
    s.event(recovery_expires_at=T0 + timedelta(days=30))
    s.run_until(STEP1)
    second = [m for m in s.sent if m.step_index == 1]
    assert bool(second) is sent
    if sent:
        deadline = second[0].context["offer"]["expires_at"]
        assert deadline == (T0 + timedelta(hours=25, seconds=1)).isoformat()
        assert "valid_for" not in second[0].context["offer"]
    else:
        step = next(r for r in s.steps() if r.step_index == 1)
        assert step.status == "skipped" and step.reason.startswith("offer expires within 1h")


def test_an_offer_without_a_deadline_is_sent_without_one(sim):
    s = sim()
    s.event(recovery_expires_at=T0 + timedelta(days=30))
    s.run_until(STEP1)
    assert s.sent[1].context["offer"] == {"promo_code": "COMEBACK10"}


# ------------------------------------------------------------------ the /r/ link


def recovery_link(s: Sim) -> str:
    journey = s.harness.rows("journeys", checkout_id="cs_1")[0]
    bound = [s.hub.installation[:8], journey.id, journey.token, 0, "outbox"]
    return "/r/" + link_serializer(s.hub.settings.secret_key, "recovery").dumps(bound)


def test_an_expired_recovery_link_goes_to_the_shops_fallback_url(sim):
    s = sim(extra='[links]\nfallback_url = "https://acme.example/cart"')
    s.event(recovery_expires_at=T0 - timedelta(days=400))
    answer = s.harness.client.get(recovery_link(s))
    assert answer.status_code == 302
    assert answer.headers["Location"] == "https://acme.example/cart"


def test_without_a_fallback_url_an_expired_link_is_a_410_page(sim):
    s = sim()
    s.event(recovery_expires_at=T0 - timedelta(days=400))
    answer = s.harness.client.get(recovery_link(s))
    assert answer.status_code == 410 and b"expired" in answer.data


def test_a_live_recovery_link_still_goes_to_the_platform(sim):
    s = sim(extra='[links]\nfallback_url = "https://acme.example/cart"')
    s.event(recovery_expires_at=None)
    answer = s.harness.client.get(recovery_link(s))
    assert answer.status_code == 302
    assert answer.headers["Location"] == "https://pay.example/r/cs_1"


# ------------------------------------------------------------------ tenant keys


GOOD = """
name = "Acme"
currency = "EUR"
{extra}
[sources.stripe]
webhook_secret = "whsec_x"
"""


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


def test_probe_and_links_default_to_on_2s_and_1h(tmp_path, registry):
    write(tmp_path, "acme", GOOD.format(extra=""))
    tenants, issues = load(tmp_path, registry)
    assert issues == []
    acme = tenants["acme"]
    assert (acme.probe.enabled, acme.probe.timeout) == (True, timedelta(seconds=2))
    assert (acme.links.margin, acme.links.fallback_url) == (timedelta(hours=1), None)


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ('[probe]\ntimeout = "1m"', "probe.timeout", "between 1s and 30s"),
        ('[probe]\ntimout = "2s"', "probe.timout", "did you mean 'timeout'"),
        ("[probe]\nenabled = 3", "probe.enabled", "Not a valid boolean"),
        ('[links]\nmargin = "1 hour"', "links.margin", "invalid duration"),
        ('[links]\nfallback_url = "acme.example"', "links.fallback_url", "Not a valid URL"),
    ],
)
def test_bad_probe_and_links_keys_name_file_and_key(tmp_path, registry, extra, key, message):
    path = write(tmp_path, "acme", GOOD.format(extra=extra))
    _tenants, issues = load(tmp_path, registry)
    assert [(i.file, i.key) for i in issues] == [(str(path), key)]
    assert message in issues[0].message


def test_an_offer_takes_expires_at_or_valid_for_not_both(tmp_path, registry):
    flow = """
[sinks.outbox]
dir = "/tmp/outbox"
[[flows]]
name = "f"
  [[flows.steps]]
  after = "1h"
  channels = ["outbox"]
  template = "reminder"
  offer = {{ promo_code = "X", {offer} }}
"""
    for offer, problem in [
        ('valid_for = "2d", expires_at = "2026-06-02T11:00:00Z"', "not both"),
        ('expires_at = "2026-06-02T11:00:00"', "Not a valid aware datetime"),
        ('valid_for = "2 days"', "invalid duration"),
    ]:
        write(tmp_path, "acme", GOOD.format(extra="") + flow.format(offer=offer))
        _tenants, issues = load(tmp_path, registry)
        assert len(issues) == 1 and problem in issues[0].message, issues
        assert issues[0].key.startswith("flows[0].steps[0].offer")
