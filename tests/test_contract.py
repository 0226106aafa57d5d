"""The plugin contract holds: built-ins use only what a third party can, every export is
documented, every HTTP sink passes the same contract check, and the operator's outbound policy
(networks, CA bundle) reaches every sink."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from ticket_stand_ins import ALLOW_LOOPBACK, WEBHOOK_SECRET

import hub
from hub import OutboundMessage, PermanentError, new_session
from hub.testing import Reply, check_sink_contract, sample_message
from hub.testing.tls import write_test_certificates

ROOT = Path(__file__).resolve().parents[1]
# the contract modules; everything in them is also exported from `hub` itself
PUBLIC_MODULES = {"hub", "hub.hookspecs", "hub.outbound", "hub.services", "hub.testing"}
CORE_ONLY_NAMES = {"current_hub", "create_app"}  # the whole core: not for plugins


def plugin_imports() -> list[tuple[str, str, int, str, list[str]]]:
    """(plugin, file, line, module, names) of every import in plugins/, outside tests."""
    found = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if "tests" in rel.parts or len(rel.parts) < 3:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(rel.parts[1], str(rel), node.lineno, a.name, []) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [a.name for a in node.names]
                found.append((rel.parts[1], str(rel), node.lineno, node.module, names))
    return found


def test_built_in_plugins_import_only_the_public_contract_and_no_other_plugin():
    imports = plugin_imports()
    assert len({plugin for plugin, *_ in imports}) >= 11, "the walk found the plugins"
    wrong = []
    for plugin, file, line, module, names in imports:
        top = module.split(".")[0]
        if top == "hub" and module not in PUBLIC_MODULES:
            wrong.append(f"{file}:{line}: imports {module}, not part of the contract")
        if top == "hub" and CORE_ONLY_NAMES & set(names):
            wrong.append(f"{file}:{line}: imports {CORE_ONLY_NAMES & set(names)} (the core)")
        if module == "hub":
            wrong += [
                f"{file}:{line}: hub has no export {n}" for n in names if n not in hub.__all__
            ]
        if top == "plugins" and module.split(".")[1:2] not in ([plugin], []):
            wrong.append(f"{file}:{line}: imports another plugin ({module})")
        if module == "plugins":
            wrong.append(f"{file}:{line}: imports the plugins package")
    assert wrong == []


def test_every_name_hub_exports_exists_and_is_documented():
    for name in hub.__all__:
        value = getattr(hub, name)
        if inspect.isfunction(value) or inspect.isclass(value):
            assert len(inspect.getdoc(value) or "") > 20, f"hub.{name} needs a docstring"
    assert set(hub.__all__) <= set(dir(hub))


# ------------------------------------------------------------------------ every HTTP sink

CUSTOMER = {"email": "jane@example.com", "phone": "+4915112345678", "country": "DE"}
SINKS = {
    "zendesk": (
        lambda url: {"base_url": url, "email": "agent@acme.example", "api_token": "zd-1"},
        Reply(201, {"ticket": {"id": 35436}}),
    ),
    "hubspot": (
        lambda url: {"base_url": url, "access_token": "pat-eu1-test"},
        Reply(200, {"results": [{"id": "501"}], "id": "9001"}),
    ),
    "ticket_webhook": (
        lambda url: {"url": f"{url}/hooks/tickets", "secret": WEBHOOK_SECRET},
        Reply(200, {"id": "T-1"}),
    ),
    "whatsapp": (
        lambda url: {
            "phone_number_id": "106540352242922",
            "access_token": "EAAG-test-token-0123456789",
            "api_base": url,
            "templates": {"reminder": {"name": "cart_reminder", "language": "en"}},
        },
        Reply(200, {"messages": [{"id": "wamid.HBgM"}]}),
    ),
}


@pytest.mark.parametrize("sink", sorted(SINKS))
def test_every_built_in_http_sink_passes_the_sink_contract(hub_factory, sink):
    config_for, success = SINKS[sink]
    harness = hub_factory({}, ALLOW_LOOPBACK)
    requests = check_sink_contract(harness, sink, config_for, CUSTOMER, success)
    assert requests and all(r.method == "POST" for r in requests)


# ------------------------------------------------------------------ the operator's CA bundle


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_test_certificates(tmp_path_factory.mktemp("tls"), "Operator CA", other_ca=True)


def send_ticket(harness, url: str) -> str | None:  # noqa: ANN001
    sink = harness.hub.sinks["ticket_webhook"]
    config = sink.config_schema().load({"url": url, "secret": WEBHOOK_SECRET})
    with harness.app.app_context():
        message = sample_message(sink, "jane@example.com", harness.hub.public_url())
        return sink.send(message, config)


def test_hub_ca_bundle_trusts_a_private_ca_for_http_sinks(hub_factory, http_stand_in, certificates):
    server = http_stand_in(
        lambda r: Reply(200, {"id": "T-7"}), (certificates["cert"], certificates["key"])
    )
    harness = hub_factory({}, {**ALLOW_LOOPBACK, "HUB_CA_BUNDLE": certificates["ca"]})
    assert send_ticket(harness, f"{server.url}/hooks") == "T-7"


def test_without_the_operators_ca_an_unknown_certificate_is_permanent_for_every_sink(
    hub_factory, http_stand_in, certificates
):
    """The three sinks used to disagree (WhatsApp retried a TLS failure, web push gave up)."""
    server = http_stand_in(
        lambda r: Reply(200, {"id": "T-7"}), (certificates["cert"], certificates["key"])
    )
    other = hub_factory({}, {**ALLOW_LOOPBACK, "HUB_CA_BUNDLE": certificates["other_ca"]})
    with pytest.raises(PermanentError, match="TLS certificate not trusted.*HUB_CA_BUNDLE"):
        send_ticket(other, f"{server.url}/hooks")
    whatsapp = other.hub.sinks["whatsapp"]
    config = whatsapp.config_schema().load(SINKS["whatsapp"][0](server.url))
    with other.app.app_context(), pytest.raises(PermanentError, match="not trusted"):
        whatsapp.send(sample_message(whatsapp, "+4915112345678", "http://hub.test"), config)
    assert server.requests == []


def test_a_missing_ca_bundle_stops_the_hub_at_start_up(hub_factory, tmp_path):
    with pytest.raises(ValueError, match="HUB_CA_BUNDLE: cannot load CA certificates"):
        hub_factory({}, {"HUB_CA_BUNDLE": str(tmp_path / "nope.pem")})


def test_a_session_refuses_loopback_unless_the_policy_allows_it(http_stand_in):
    from hub import NetworkPolicy, classify_request_error

    server = http_stand_in()
    with pytest.raises(Exception) as caught:
        new_session(NetworkPolicy()).get(server.url, timeout=2, allow_redirects=False)
    refused = classify_request_error(caught.value, "probe", repeatable=True)
    assert isinstance(refused, PermanentError) and "non-public address" in refused.reason
    allowed = new_session(NetworkPolicy(("127.0.0.0/8",)))
    assert allowed.get(server.url, timeout=2, allow_redirects=False).status_code == 200


def test_sample_message_is_what_the_engine_hands_a_sink(hub_factory):
    harness = hub_factory({}, ALLOW_LOOPBACK)
    message = sample_message(harness.hub.sinks["email"], "jane@example.com", "http://hub.test")
    assert isinstance(message, OutboundMessage) and message.channel == "email"
    assert message.parts["txt"].endswith("http://hub.test/r/contract-token")
