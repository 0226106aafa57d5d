"""The e-mail sink: localized templates, the headers a bulk sender needs, and SMTP submission
over STARTTLS and implicit TLS with AUTH — all against real aiosmtpd servers on loopback, with a
private CA made here (the sink's ``ca_file`` trusts it)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from marshmallow import ValidationError
from samples import stripe_event, stripe_headers, stripe_session, tenant_toml

from hub import OutboundMessage, OutcomeUnknown, PermanentError, RetryableError
from hub.mail import WIRE_POLICY, build_email
from hub.plugins import load_plugins
from hub.templates import Renderer, locale_candidates
from hub.testing import free_port, wait_for
from hub.testing.tls import write_test_certificates
from plugins.email.sink import EmailConfig, EmailSink

USER = "shop@acme.example"  # providers often use the mailbox as the login
PASSWORD = "s3cret: p@ss/word"  # characters that must be percent-encoded in smtp_url
CREDENTIALS = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}"
TEMPLATES = ("reminder", "discount", "nudge", "lead")
LOCALES = ("en", "de", "fr", "ru", "zh")
GREETING = {
    "en": "Hi Jane,",
    "de": "Hallo Jane,",
    "fr": "Bonjour Jane,",
    "ru": "Здравствуйте, Jane!",
    "zh": "Jane，您好！",
}
UNSUBSCRIBE_WORD = {
    "en": "Unsubscribe",
    "de": "Abmelden",
    "fr": "Se désabonner",
    "ru": "Отписаться",
    "zh": "退订",
}


# ---------------------------------------------------------------------------- certificates


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private CA, a server certificate it signed for 127.0.0.1, and an unrelated CA."""
    return write_test_certificates(tmp_path_factory.mktemp("tls"), "Test Mail CA", other_ca=True)


@pytest.fixture(autouse=True)
def foreign_default_trust(certificates: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine presets SSL_CERT_FILE; point it at an unrelated CA so only ``ca_file`` can
    make the test CA trusted, whatever the host's setup."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates["other_ca"]))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


# ---------------------------------------------------------------------------- SMTP servers


class MailServer:
    """A real aiosmtpd server on 127.0.0.1: ``plain``, ``starttls`` (required before AUTH and
    MAIL) or implicit ``tls``, with AUTH PLAIN and LOGIN for one user.

    It records every EHLO by client address (distinct addresses = TCP connections), every
    login, and every message with the TLS version it came over. ``replies`` makes a stage
    (``mail``, ``rcpt``, ``data``) answer a fixed reply; ``drop_in_data`` closes the connection
    after the message arrived and before answering; ``data_delay`` answers late;
    ``refuse_reused_mail`` answers 421 to the first MAIL on a connection that already delivered.
    """

    def __init__(
        self,
        mode: str,
        certificates: dict[str, Path] | None = None,
        mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN"),
        idle_timeout: float = 300,
    ) -> None:
        import ssl

        self.mode = mode
        self.port = free_port()
        self.messages: list[Any] = []
        self.raw: list[bytes] = []
        self.tls_versions: list[str | None] = []
        self.peers: list[Any] = []
        self.delivered_by: list[Any] = []
        self.logins: list[tuple[str, str, bool]] = []
        self.replies: dict[str, str] = {}
        self.drop_in_data = False
        self.data_delay = 0.0
        self.refuse_reused_mail = False
        kwargs: dict[str, Any] = {
            "timeout": idle_timeout,
            "authenticator": self._authenticate,
            "auth_exclude_mechanism": [m for m in ("PLAIN", "LOGIN") if m not in mechanisms],
        }
        server_tls = None
        if mode != "plain":
            server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server_tls.load_cert_chain(certificates["cert"], certificates["key"])
        if mode == "starttls":
            kwargs.update(tls_context=server_tls, require_starttls=True, auth_require_tls=True)
        elif mode == "tls":
            # aiosmtpd cannot tell that an implicit-TLS socket is encrypted; it is
            kwargs.update(ssl_context=server_tls, auth_require_tls=False)
        self.controller = Controller(
            _Recorder(self), hostname="127.0.0.1", port=self.port, **kwargs
        )

    def url(self, credentials: str | None = CREDENTIALS) -> str:
        scheme = {"plain": "smtp", "starttls": "smtp+starttls", "tls": "smtps"}[self.mode]
        userinfo = f"{credentials}@" if credentials else ""
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return len(set(self.peers))

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
        login = auth_data.login.decode()
        ok = login == USER and auth_data.password.decode() == PASSWORD
        self.logins.append((mechanism, login, ok))
        return AuthResult(success=ok, handled=False)

    def start(self) -> MailServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


class _Recorder:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001, ANN201, N802
        session.host_name = hostname
        self.server.peers.append(session.peer)
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001, ANN201, N802
        if self.server.refuse_reused_mail and session.peer in self.server.delivered_by:
            self.server.refuse_reused_mail = False
            return "421 4.4.2 idle too long, closing connection"
        if "mail" in self.server.replies:
            return self.server.replies["mail"]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201, N802
        if "rcpt" in self.server.replies:
            return self.server.replies["rcpt"]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        if self.server.drop_in_data:
            server.transport.close()  # the message arrived, the answer never leaves
            return "250 never sent"
        if self.server.data_delay:
            await asyncio.sleep(self.server.data_delay)
        if "data" in self.server.replies:
            return self.server.replies["data"]
        ssl_object = server.transport.get_extra_info("ssl_object")
        self.server.tls_versions.append(ssl_object.version() if ssl_object else None)
        self.server.raw.append(envelope.original_content)
        self.server.messages.append(
            message_from_bytes(envelope.original_content, policy=policy.default)
        )
        self.server.delivered_by.append(session.peer)
        return "250 2.0.0 queued"


@pytest.fixture
def mail_server(certificates: dict[str, Path]):  # noqa: ANN201
    """``mail_server(mode, **options)`` starts a :class:`MailServer`; all stop afterwards."""
    servers: list[MailServer] = []

    def make(mode: str = "starttls", **options: Any) -> MailServer:
        server = MailServer(mode, certificates, **options)
        servers.append(server.start())
        return server

    yield make
    for server in servers:
        server.stop()


def sink_config(url: str, ca_file: Path | None, **extra: Any) -> dict:
    """A tenant's ``[sinks.email]`` table, loaded by the sink's own schema."""
    table = {"smtp_url": url, "from": "Müller & Söhne <shop@acme.example>", **extra}
    if ca_file is not None:
        table["ca_file"] = str(ca_file)
    return EmailConfig().load(table)


def outbound(
    to: str = "jane@example.com",
    subject: str = "Ihr Warenkorb wartet",
    locale: str = "de",
    delivery_id: int = 7,
    unsubscribe_url: str = "https://hub.example/u/WzEsImVtYWlsIl0.token",
) -> OutboundMessage:
    return OutboundMessage(
        tenant="acme",
        journey_id=1,
        step_index=0,
        delivery_id=delivery_id,
        channel="email",
        to=to,
        locale=locale,
        parts={"subject": subject, "txt": "Hallo Jane,\n\n.a line starting with a dot\n"},
        context={"unsubscribe_url": unsubscribe_url},
    )


# ---------------------------------------------------------------------------- rendering


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    """The hub's renderer with the installed plugins and no tenant overrides."""
    return Renderer(tmp_path_factory.mktemp("config"), load_plugins())


def context(**overrides: Any) -> dict:
    """The context the engine gives every template (architecture §4), filled in."""
    base = {
        "customer": {
            "first_name": "Jane",
            "last_name": "Doe",
            "name": "Jane Doe",
            "email": "jane@example.com",
            "locale": "de",
            "country": "DE",
        },
        "cart": {
            "total_display": "79,97\xa0€",
            "currency": "EUR",
            "items": [
                {
                    "name": "Trail Runner <Limited>",
                    "quantity": 1,
                    "unit_price_display": "49,99\xa0€",
                    "url": "https://shop.example/p/trail?size=42&color=red",
                    "image": "https://cdn.example/trail.jpg",
                },
                {
                    "name": "Wool Socks",
                    "quantity": 2,
                    "unit_price_display": "14,99\xa0€",
                    "url": None,
                    "image": None,
                },
            ],
        },
        "recovery_url": "http://hub.test/r/WzEsMCwiZW1haWwiXQ.sig",
        "offer": {"promo_code": "COMEBACK10", "text": "10 % Rabatt"},
        "unsubscribe_url": "http://hub.test/u/WzEsImVtYWlsIl0.sig",
        "tenant": {"name": "Müller & Söhne", "support": "help@acme.example", "slug": "acme"},
        "stage": "cart",
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("customer_locale", "tenant_locale", "expected"),
    [
        ("en_US", "de", "en"),
        ("de-AT", "en", "de"),
        ("fr_CA", "de", "fr"),
        ("ru", "de", "ru"),
        ("zh-CN", "de", "zh"),
        ("pt_BR", "fr", "fr"),  # no Portuguese: the tenant's language
        (None, "ru", "ru"),  # no customer locale: the tenant's
        ("pt", "pt", "en"),  # neither exists: English
    ],
)
def test_the_language_follows_customer_locale_then_tenant_then_english(
    renderer: Renderer, customer_locale: str | None, tenant_locale: str, expected: str
) -> None:
    locales = locale_candidates(customer_locale, tenant_locale)
    for name in TEMPLATES:
        used, parts = renderer.render("acme", name, "email", locales, context())
        assert used == expected, name
        assert set(parts) == {"subject", "txt", "html"}
        assert parts["txt"].startswith(GREETING[expected]), name
        html_lang = "zh-Hans" if expected == "zh" else expected
        assert f'<html lang="{html_lang}">' in parts["html"]
        assert f"{UNSUBSCRIBE_WORD[expected]}" in parts["txt"]


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_shows_items_with_images_code_support_and_unsubscribe(
    renderer: Renderer, name: str, locale: str
) -> None:
    _, parts = renderer.render("acme", name, "email", [locale], context())
    html, text, subject = parts["html"], parts["txt"], parts["subject"]
    assert "\n" not in subject.strip() and 10 < len(subject.strip()) < 120
    # line items: the image with alt text, the escaped, linked name, quantity and price
    assert (
        '<img src="https://cdn.example/trail.jpg" alt="Trail Runner &lt;Limited&gt;" width="64"'
        in html
    )
    assert (
        '<a href="https://shop.example/p/trail?size=42&amp;color=red" '
        'style="color:#222222;text-decoration:underline;">Trail Runner &lt;Limited&gt;</a>'
    ) in html
    assert "Wool Socks" in html and "14,99\xa0€" in html and "79,97\xa0€" in html
    assert html.count("<img ") == 1  # the item without an image gets an empty cell, no <img>
    assert "- 1 × Trail Runner <Limited> (49,99\xa0€)" in text  # plain text is not escaped
    assert "- 2 × Wool Socks (14,99\xa0€)" in text
    # the step's promo code and the tenant's text, the support contact, both links
    for part in (html, text):
        assert "COMEBACK10" in part and "10 % Rabatt" in part
        assert "help@acme.example" in part
    assert 'href="http://hub.test/r/WzEsMCwiZW1haWwiXQ.sig"' in html
    assert 'href="http://hub.test/u/WzEsImVtYWlsIl0.sig"' in html
    assert text.index("http://hub.test/r/") < text.index("http://hub.test/u/")
    assert text.rstrip().endswith("http://hub.test/u/WzEsImVtYWlsIl0.sig")
    assert "Müller &amp; Söhne" in html and "Müller & Söhne" in text
    # e-mail-safe HTML: tables and inline styles, nothing a mail client strips or blocks
    for forbidden in ("<script", "<style", "<link", "class=", "javascript:"):
        assert forbidden not in html
    assert 'role="presentation"' in html


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_renders_with_the_bare_minimum(
    renderer: Renderer, name: str, locale: str
) -> None:
    """No name, no cart, no offer, no recovery link, no support: still a clean message."""
    bare = context(
        customer={"first_name": None, "last_name": None, "name": None},
        cart=None,
        offer=None,
        recovery_url=None,
        tenant={"name": "Acme", "support": None, "slug": "acme"},
        stage=None,
    )
    _, parts = renderer.render("acme", name, "email", [locale], bare)
    for ext, part in parts.items():
        assert part.strip(), ext
        assert "None" not in part and "Undefined" not in part, ext
    assert "<img" not in parts["html"]
    if name != "nudge":  # the nudge's subject is a short question without the shop's name
        assert "Acme" in parts["subject"]
    assert "http://hub.test/u/" in parts["txt"] and "http://hub.test/u/" in parts["html"]
    assert "http://hub.test/r/" not in parts["txt"]


def test_html_escapes_what_shoppers_typed(renderer: Renderer) -> None:
    hostile = context(
        customer={"first_name": '"><img src=x onerror=alert(1)>', "name": "x"},
        cart={
            "total_display": "1 €",
            "currency": "EUR",
            "items": [
                {
                    "name": "<script>alert(1)</script>",
                    "quantity": 1,
                    "unit_price_display": "1 €",
                    "image": 'https://cdn.example/a.jpg" onerror="alert(1)',
                    "url": None,
                }
            ],
        },
    )
    for name in TEMPLATES:
        _, parts = renderer.render("acme", name, "email", ["en"], hostile)
        html = parts["html"]
        assert "<script>" not in html and "&lt;script&gt;" in html
        assert "<img src=x" not in html and "&#34;&gt;&lt;img src=x" in html
        assert 'onerror="alert(1)' not in html


def test_discount_leads_with_the_promo_code(renderer: Renderer) -> None:
    _, parts = renderer.render("acme", "discount", "email", ["de"], context())
    assert parts["subject"].strip() == "Jane, ein kleines Dankeschön von Müller & Söhne: COMEBACK10"
    html, text = parts["html"], parts["txt"]
    assert html.index("COMEBACK10") < html.index("Trail Runner")
    assert text.index("COMEBACK10") < text.index("Trail Runner")
    assert "Ihr persönlicher Code COMEBACK10" in html.split("</div>")[0]  # the preview text
    # without a code the subject says what is left, and no empty code box appears
    _, plain = renderer.render("acme", "discount", "email", ["de"], context(offer=None))
    assert plain["subject"].strip() == "Jane, Ihr Warenkorb bei Müller & Söhne wartet auf Sie"
    assert "dashed" not in plain["html"]


def test_lead_speaks_of_the_product_from_the_order_form(renderer: Renderer) -> None:
    """A Digistore24 contact-data lead: one product, no image, no offer."""
    lead = context(
        cart={
            "total_display": "$49.00",
            "currency": "USD",
            "items": [
                {
                    "name": "Guide to Happiness",
                    "quantity": 1,
                    "unit_price_display": "$49.00",
                    "url": "https://www.digistore24.com/product/122343",
                    "sku": "122343",
                }
            ],
        },
        offer=None,
        stage="contact",
    )
    subjects = {}
    for locale in LOCALES:
        _, parts = renderer.render("acme", "lead", "email", [locale], lead)
        subjects[locale] = parts["subject"].strip()
        assert "Guide to Happiness" in parts["txt"] and "<img" not in parts["html"]
        assert "$49.00" in parts["html"]
    assert subjects == {
        "en": "Jane, any questions about Guide to Happiness?",
        "de": "Jane, haben Sie noch Fragen zu Guide to Happiness?",
        "fr": "Jane, une question sur Guide to Happiness\xa0?",
        "ru": "Jane, остались вопросы о «Guide to Happiness»?",
        "zh": "Jane，关于「Guide to Happiness」，您还有疑问吗？",
    }


def test_nudge_is_short_and_knows_an_unfinished_payment(renderer: Renderer) -> None:
    _, nudge = renderer.render("acme", "nudge", "email", ["en"], context(offer=None))
    _, reminder = renderer.render("acme", "reminder", "email", ["en"], context(offer=None))
    assert nudge["subject"].strip() == "Jane, still thinking it over?"
    assert len(nudge["txt"]) < len(reminder["txt"]) + 80
    _, paid = renderer.render("acme", "nudge", "email", ["de"], context(stage="payment"))
    assert "nur die Zahlung fehlte noch" in paid["txt"]


# ---------------------------------------------------------------------------- headers


def headers_of(raw: bytes) -> str:
    return raw.split(b"\r\n\r\n", 1)[0].decode("ascii")


def test_message_carries_the_headers_a_bulk_sender_needs() -> None:
    config = {
        "from": "Müller & Söhne <shop@acme.example>",
        "reply_to": "Kundenservice <help@acme.example>",
        "unsubscribe_mailto": "unsubscribe@acme.example",
    }
    email = build_email(outbound(locale="de_AT"), config)
    raw = email.as_bytes(policy=WIRE_POLICY)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert re.fullmatch(r"<[^<>@\s]+@acme\.example>", parsed["Message-ID"])
    sent_at = parsedate_to_datetime(parsed["Date"])
    assert abs((dt.datetime.now(dt.UTC) - sent_at).total_seconds()) < 60
    assert parsed["List-Unsubscribe"] == (
        "<https://hub.example/u/WzEsImVtYWlsIl0.token>, "
        "<mailto:unsubscribe@acme.example?subject=unsubscribe-7>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Feedback-ID"] == "step0:acme:recovery:acme.example"
    assert parsed["Content-Language"] == "de-AT"
    assert parsed["Precedence"] == "bulk"
    assert parsed["Auto-Submitted"] is None  # marketing mail, not an auto-reply
    assert parsed["Reply-To"].addresses[0].addr_spec == "help@acme.example"
    assert parsed["To"] == "jane@example.com"
    # every header line is ASCII and within RFC 5322's 998 octets
    assert all(len(line) <= 998 for line in headers_of(raw).split("\r\n"))


def test_long_unsubscribe_url_is_neither_encoded_nor_broken() -> None:
    """Python alone would refold a line over 78 characters into =?utf-8?q?…?= words, which
    no mail client reads as a URL; a typical HUB_PUBLIC_URL plus the token is longer."""
    url = "https://recovery.agency-example.com/u/WzEyMzQ1NiwiZW1haWwiXQ.0123456789abcdefghijklmnopq"
    email = build_email(
        outbound(unsubscribe_url=url), {"from": "shop@acme.example", "unsubscribe_mailto": None}
    )
    head = headers_of(email.as_bytes(policy=WIRE_POLICY))
    assert f"\r\nList-Unsubscribe: <{url}>\r\n" in head
    assert "=?" not in head.split("List-Unsubscribe: ")[1].split("\r\n")[0]


@pytest.mark.parametrize(
    "subject",
    [
        "Jürgen, Ihr Warenkorb bei Müller & Söhne wartet auf Sie – mit 10 % Rabatt",
        "Анна, Ваша корзина в магазине «Ромашка» ждёт Вас — небольшой подарок: промокод",
        "李娜，您在小米商城的购物车还在等您 — 小米商城送您一份小礼：优惠码 COMEBACK10",
        # two adjacent encoded words with a space between: Python's own folding drops it
        "Ihr Warenkorb bei Müller & Söhne wartet – Jürgen, 你好 ваша корзина " * 2,
        "An ASCII subject that is long enough to be folded somewhere in the middle of it, twice "
        "over, when the header line passes seventy-eight characters",
    ],
)
def test_subjects_and_display_names_are_rfc2047_encoded_and_round_trip(subject: str) -> None:
    subject = " ".join(subject.split())
    config = {
        "from": "Müller & Söhne <shop@acme.example>",
        "reply_to": "Служба поддержки 小米 <help@acme.example>",
    }
    raw = build_email(outbound(subject=subject), config).as_bytes(policy=WIRE_POLICY)
    head = headers_of(raw)  # decodes as ASCII or fails
    assert all(len(line) <= 78 for line in head.split("\r\n") if not line.startswith("List-"))
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == subject
    unfolded = dict(line.split(": ", 1) for line in re.sub(r"\r\n[ \t]", " ", head).split("\r\n"))
    assert str(make_header(decode_header(unfolded["Subject"]))) == subject  # RFC 2047 decoding
    raw_from = unfolded["From"]
    assert raw_from == "=?utf-8?b?TcO8bGxlciAmIFPDtmhuZQ==?= <shop@acme.example>"
    assert parsed["From"].addresses[0].display_name == "Müller & Söhne"
    assert parsed["Reply-To"].addresses[0].display_name == "Служба поддержки 小米"


def test_unquoted_display_name_with_comma_is_one_quoted_mailbox() -> None:
    email = build_email(outbound(), {"from": "Acme, Inc. <shop@acme.example>"})
    head = headers_of(email.as_bytes(policy=WIRE_POLICY))
    assert '\r\nFrom: "Acme, Inc." <shop@acme.example>\r\n' in head
    [sender] = email["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Acme, Inc.", "shop@acme.example")


def test_recipient_domain_goes_out_as_idna() -> None:
    email = build_email(outbound(to="anna@bücher.example"), {"from": "shop@müller.example"})
    head = headers_of(email.as_bytes(policy=WIRE_POLICY))
    assert "\r\nTo: anna@xn--bcher-kva.example\r\n" in head
    assert "<shop@xn--mller-kva.example>" not in head  # bare address, no angle brackets
    assert "\r\nFrom: shop@xn--mller-kva.example\r\n" in head
    with pytest.raises(PermanentError, match="non-ASCII local part"):
        build_email(outbound(to="jürgen@example.com"), {"from": "shop@acme.example"})
    with pytest.raises(PermanentError, match="invalid recipient"):
        build_email(outbound(to="not an address"), {"from": "shop@acme.example"})


@pytest.mark.parametrize(
    ("table", "field", "message"),
    [
        ({"from": "Acme"}, "from", "not an e-mail address"),
        ({"reply_to": "help at acme"}, "reply_to", "not an e-mail address"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file", "cannot load CA certificates"),
        ({"smtp_url": "smtp://u:p@mail.example:25"}, "smtp_url", "unencrypted"),
        ({"smtp_url": "http://mail.example"}, "smtp_url", "smtp+starttls://"),
        ({"timeout": 0}, "timeout", "greater than"),
    ],
)
def test_config_names_the_bad_key(table: dict, field: str, message: str) -> None:
    base = {"smtp_url": "smtp+starttls://u:p@mail.example:587", "from": "Acme <a@acme.example>"}
    with pytest.raises(ValidationError) as caught:
        EmailConfig().load({**base, **table})
    assert message in " ".join(caught.value.messages[field])


# ---------------------------------------------------------------------------- SMTP


@pytest.mark.parametrize("mode", ["starttls", "tls"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_submission_over_tls_with_auth_delivers_the_message(
    mail_server, certificates: dict[str, Path], mode: str, mechanism: str
) -> None:
    server = mail_server(mode, mechanisms=(mechanism,))
    sink = EmailSink()
    message_id = sink.send(outbound(), sink_config(server.url(), certificates["ca"]))
    [mail] = server.messages
    assert mail["Message-ID"] == message_id
    assert mail["Subject"] == "Ihr Warenkorb wartet"
    assert server.tls_versions[0] in ("TLSv1.2", "TLSv1.3")
    assert server.logins == [(mechanism, USER, True)]
    # a line that starts with a dot survives SMTP's dot-stuffing
    assert ".a line starting with a dot" in mail.get_content()


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_untrusted_certificate_is_a_permanent_failure(mail_server, mode: str) -> None:
    """Without ca_file the private CA is unknown (SSL_CERT_FILE names another CA here)."""
    server = mail_server(mode)
    with pytest.raises(PermanentError, match="not trusted: unable to get local issuer certificate"):
        EmailSink().send(outbound(), sink_config(server.url(), None))
    assert server.messages == [] and server.logins == []


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_the_operators_hub_ca_bundle_trusts_a_private_ca_for_smtp(
    hub_factory, mail_server, certificates: dict[str, Path], mode: str
) -> None:
    """One operator setting for all outbound TLS: no per-tenant ca_file needed."""
    server = mail_server(mode)
    harness = hub_factory({}, {"HUB_CA_BUNDLE": str(certificates["ca"])})
    sink = harness.hub.sinks["email"]
    with harness.app.app_context():
        message_id = sink.send(outbound(), sink_config(server.url(), None))
    [mail] = server.messages
    assert mail["Message-ID"] == message_id


def test_rejected_login_is_permanent(mail_server, certificates: dict[str, Path]) -> None:
    server = mail_server("starttls")
    bad = f"{quote(USER, safe='')}:wrong"
    with pytest.raises(PermanentError, match=r"login rejected at 127\.0\.0\.1:\d+ \(535\)"):
        EmailSink().send(outbound(), sink_config(server.url(bad), certificates["ca"]))
    assert server.messages == []
    assert {ok for _, _, ok in server.logins} == {False}


def test_starttls_url_against_a_server_without_starttls_is_permanent(
    mail_server, certificates: dict[str, Path]
) -> None:
    plain = mail_server("plain")
    url = plain.url().replace("smtp://", "smtp+starttls://")
    with pytest.raises(PermanentError, match="STARTTLS extension not supported"):
        EmailSink().send(outbound(), sink_config(url, certificates["ca"]))
    assert plain.messages == []


def test_unreachable_server_is_retryable(certificates: dict[str, Path]) -> None:
    url = f"smtp+starttls://{CREDENTIALS}@127.0.0.1:{free_port()}"
    with pytest.raises(RetryableError, match="unreachable: ConnectionRefusedError"):
        EmailSink().send(outbound(), sink_config(url, certificates["ca"]))


@pytest.mark.parametrize(
    ("stage", "reply", "error"),
    [
        ("mail", "451 4.7.1 greylisted, try again later", RetryableError),
        ("mail", "550 5.7.1 sender rejected", PermanentError),
        ("rcpt", "452 4.2.2 mailbox full", RetryableError),
        ("rcpt", "550 5.1.1 no such user", PermanentError),
        ("data", "451 4.3.0 temporary failure", RetryableError),
        ("data", "554 5.7.1 message rejected as spam", PermanentError),
    ],
)
def test_4xx_replies_are_retryable_5xx_permanent_and_the_connection_stays_usable(
    mail_server, certificates: dict[str, Path], stage: str, reply: str, error: type
) -> None:
    server = mail_server("starttls")
    server.replies[stage] = reply
    sink = EmailSink()
    config = sink_config(server.url(), certificates["ca"])
    with pytest.raises(error) as caught:
        sink.send(outbound(), config)
    assert caught.value.reason.startswith(f"SMTP {reply[:3]} at ")
    assert reply[4:] in caught.value.reason
    server.replies.clear()
    sink.send(outbound(), config)  # RSET left the pooled connection ready
    assert len(server.messages) == 1 and server.connections == 1


def test_connection_lost_during_data_is_outcome_unknown(
    mail_server, certificates: dict[str, Path]
) -> None:
    server = mail_server("starttls")
    server.drop_in_data = True
    sink = EmailSink()
    config = sink_config(server.url(), certificates["ca"])
    with pytest.raises(OutcomeUnknown, match="lost during DATA: SMTPServerDisconnected"):
        sink.send(outbound(), config)
    server.drop_in_data = False
    sink.send(outbound(), config)  # the broken connection was dropped, a new one opened
    assert len(server.messages) == 1 and server.connections == 2


def test_no_answer_after_data_is_outcome_unknown(
    mail_server, certificates: dict[str, Path]
) -> None:
    server = mail_server("starttls")
    server.data_delay = 2.0
    config = sink_config(server.url(), certificates["ca"], timeout=0.5)
    with pytest.raises(
        OutcomeUnknown, match="lost during DATA: SMTPServerDisconnected: .*timed out"
    ):
        EmailSink().send(outbound(), config)


def test_three_messages_share_one_connection(mail_server, certificates: dict[str, Path]) -> None:
    server = mail_server("starttls")
    sink = EmailSink()
    config = sink_config(server.url(), certificates["ca"])
    ids = [sink.send(outbound(delivery_id=n), config) for n in (1, 2, 3)]
    assert [m["Message-ID"] for m in server.messages] == ids
    assert server.connections == 1 and len(server.logins) == 1


def test_idle_connection_closed_by_the_server_is_reopened_without_a_duplicate(
    mail_server, certificates: dict[str, Path]
) -> None:
    server = mail_server("tls", idle_timeout=0.5)
    sink = EmailSink()
    config = sink_config(server.url(), certificates["ca"])
    first = sink.send(outbound(delivery_id=1), config)
    time.sleep(1.0)  # the server hangs up the idle connection
    second = sink.send(outbound(delivery_id=2), config)
    assert [m["Message-ID"] for m in server.messages] == [first, second]
    assert server.connections == 2


def test_421_at_mail_from_on_a_reused_connection_reopens_it(
    mail_server, certificates: dict[str, Path]
) -> None:
    server = mail_server("starttls")
    sink = EmailSink()
    config = sink_config(server.url(), certificates["ca"])
    sink.send(outbound(delivery_id=1), config)
    server.refuse_reused_mail = True
    sink.send(outbound(delivery_id=2), config)
    assert len(server.messages) == 2 and server.connections == 2


# ---------------------------------------------------------------------------- end to end

STEP = """
  [[flows.steps]]
  after = "1s"
  channels = {channels}
  template = "reminder"
"""


def test_three_abandonments_in_three_languages_go_over_one_authenticated_tls_connection(
    hub_factory, mail_server, certificates: dict[str, Path]
) -> None:
    server = mail_server("starttls")
    extra = f'ca_file = "{certificates["ca"]}"\nreply_to = "Kundenservice <help@acme.example>"\n'
    harness = hub_factory(
        {"acme": tenant_toml(smtp_url=server.url(), name="Müller & Söhne", extra=extra)}
    )
    customers = [("fr", "marie@example.fr"), ("ru", "anna@example.ru"), ("zh", "li@example.cn")]
    for n, (locale, address) in enumerate(customers):
        session = stripe_session(f"cs_test_{locale}", locale=locale)
        session["customer_details"].update(email=address, phone=None)  # three people
        body = stripe_event(event_id=f"evt_{n}", session=session)
        assert harness.post("acme", "stripe", body, stripe_headers(body)).status_code == 202
    harness.start_worker()
    wait_for(lambda: len(server.messages) == 3, message="three mails")
    by_recipient = {m["To"]: m for m in server.messages}
    assert by_recipient["marie@example.fr"]["Subject"].startswith("Jane, votre panier chez")
    assert by_recipient["anna@example.ru"]["Subject"] == (
        "Jane, Ваша корзина в магазине Müller & Söhne ждёт Вас"
    )
    assert by_recipient["li@example.cn"]["Content-Language"] == "zh"
    for mail in server.messages:
        assert mail["From"].addresses[0].display_name == "Acme"
        assert mail["Reply-To"].addresses[0].addr_spec == "help@acme.example"
        html = mail.get_body(("html",)).get_content()
        assert "49,99" in html or "49.99" in html
    assert server.connections == 1 and len(server.logins) == 1
    assert set(server.tls_versions) <= {"TLSv1.2", "TLSv1.3"}
    harness.wait_for(
        lambda: [d.status for d in harness.rows("deliveries")] == ["sent"] * 3,
        message="three deliveries sent",
    )


def test_rejected_login_falls_back_to_the_next_channel(
    hub_factory, mail_server, certificates: dict[str, Path], tmp_path: Path
) -> None:
    server = mail_server("tls")
    outbox = tmp_path / "outbox"
    extra = (
        f'ca_file = "{certificates["ca"]}"\n\n[sinks.outbox]\ndir = "{outbox}"\n'
        'from = "Acme <shop@acme.example>"\n'
    )
    url = server.url(f"{quote(USER, safe='')}:wrong")
    steps = STEP.format(channels='["email", "outbox"]')
    harness = hub_factory({"acme": tenant_toml(smtp_url=url, extra=extra, steps=steps)})
    body = stripe_event()
    harness.post("acme", "stripe", body, stripe_headers(body))
    harness.start_worker()
    harness.wait_for(
        lambda: [d.status for d in harness.rows("deliveries")] == ["failed", "sent"],
        message="e-mail failed, outbox sent",
    )
    email, fallback = harness.rows("deliveries")
    assert email.sink == "email" and email.attempts == 1
    assert re.match(r"SMTP login rejected at 127\.0\.0\.1:\d+ \(535\)", email.reason)
    assert fallback.sink == "outbox"
    assert list((outbox / "acme").glob("*.eml"))
    assert server.messages == []


def test_the_rendered_examples_in_the_docs_are_what_the_templates_produce(
    renderer: Renderer,
) -> None:
    from hub.money import format_money

    docs = (Path(__file__).resolve().parents[1] / "docs" / "email.md").read_text()
    for name, locale in (("discount", "de"), ("reminder", "en")):
        money = {n: format_money(n, "EUR", locale) for n in (7997, 4999, 1499)}
        example = context(
            cart={
                "total_display": money[7997],
                "currency": "EUR",
                "items": [
                    {"name": "Trail Runner", "quantity": 1, "unit_price_display": money[4999]},
                    {"name": "Wool Socks", "quantity": 2, "unit_price_display": money[1499]},
                ],
            },
            recovery_url="https://hub.example.com/r/WzQyLDEsImVtYWlsIl0.Q2xp",
            unsubscribe_url="https://hub.example.com/u/WzQyLCJlbWFpbCJd.x7Kq",
            offer={"promo_code": "COMEBACK10", "text": "10 % off your order"},
            tenant={
                "name": "Acme Shoes",
                "support": "+49 30 1234567 · help@acme.example",
                "slug": "acme",
            },
        )
        _, parts = renderer.render("acme", name, "email", [locale], example)
        shown = f"Subject: {parts['subject'].strip()}\n\n{parts['txt']}"
        # Babel's no-break space before € is written as a plain one in the docs
        assert shown.replace("\xa0", " ") in docs, f"{name}/{locale} in docs/email.md is stale"
