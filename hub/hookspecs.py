"""The plugin contract of abandonment-hub.

Read this module before writing a plugin: it is the whole API between the hub and a plugin.

A plugin is an importable module that implements some of the hooks below with the
:data:`hub.hookimpl` marker and is registered through the Python entry-point group
``abandonment_hub``::

    # pyproject.toml of your package
    [project.entry-points.abandonment_hub]
    acme_crm = "acme_crm_plugin"

The built-in plugins in ``plugins/`` are registered exactly the same way.

Hooks return *data* (:class:`Source` and :class:`Sink` objects, blueprints, Click commands); the
core decides what to do with it. Each hook is called once at start-up to build registries, so
hooks may do a little work, but never I/O that can hang.

A **source** turns one platform callback into normalized events (see ``hub.events``); a **sink**
sends one rendered message on one channel. Both declare a marshmallow schema for their table in
a tenant file (``[sources.<name>]`` / ``[sinks.<name>]``); the hub validates every tenant's table
at start-up and hands the loaded dict to every call as ``config``.

Hooks that take ``services`` get the plugin's own :class:`hub.PluginServices`: the narrow,
documented object through which a plugin acts at run time (its config, its data, provider
statuses, suppressions, the public URL, outbound HTTP under the operator's policy). Plugins import
only ``hub`` (which re-exports this module, ``hub.outbound``, ``hub.services`` and the helpers
for money, phones, durations, masking and the event schema); a test fails the build when a
built-in plugin imports anything else of the hub or another plugin. ``docs/plugins.md`` is the
author's guide.

Errors a plugin raises on purpose are defined here: :class:`VerificationError` (→ 401),
:class:`PayloadError` (→ 400 naming the field), :class:`RetryableError` and
:class:`PermanentError` (a sink's failed send). Any other exception from plugin code is caught
by the hub, reported with the plugin's name, and never takes the hub down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import pluggy

if TYPE_CHECKING:
    from hub.services import PluginServices

PROJECT_NAME = "abandonment_hub"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --------------------------------------------------------------------------------------------
# Errors a plugin raises on purpose
# --------------------------------------------------------------------------------------------


class VerificationError(Exception):
    """The request does not prove it comes from the platform: the ingress answers 401.

    Raise it for a missing, garbled or wrong signature and for a timestamp outside the allowed
    window. The message is returned to the caller, so never put a secret or the expected
    signature in it.
    """


class PayloadError(Exception):
    """The request is authentic but its content is unusable: the ingress answers 400.

    ``field`` names the part of the payload at fault (a dotted path such as
    ``data.object.currency``) so the platform's operator can see what to fix.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class RetryableError(Exception):
    """A send failed in a way that may succeed later (timeout before sending, 429, 5xx).

    ``retry_after`` (seconds) is the provider's own hint, e.g. a ``Retry-After`` header; the
    engine clamps it and otherwise backs off exponentially with jitter. A plugin never sleeps.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentError(Exception):
    """A send failed for good (invalid address, rejected template, 4xx): do not retry.

    The engine records ``reason`` in the delivery log and falls back to the step's next channel.
    ``bounce=True`` says the recipient's side refused the message itself (an SMTP 5xx to
    ``RCPT TO`` or ``DATA``, a provider's "undeliverable address"): the hub also records a
    ``bounced`` tracking event, which results report apart from configuration failures.
    """

    def __init__(self, reason: str, *, bounce: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.bounce = bounce


class OutcomeUnknown(Exception):
    """The request may have reached the provider but its answer was lost (read timeout).

    For a sink whose provider does not deduplicate, the hub records the delivery as ``unknown``
    and does not retry: a duplicate recovery message is worse than a missing one.
    """


# --------------------------------------------------------------------------------------------
# What the hub hands to plugins
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundRequest:
    """One platform callback exactly as received.

    ``body`` holds the raw bytes: verify signatures over these, never over re-serialised data.
    ``headers`` is case-insensitive. ``tenant`` is the tenant's slug from the URL; a source must
    verify with *this tenant's* secret only.
    """

    tenant: str
    source: str
    method: str
    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str]
    content_type: str
    received_at: datetime

    def json(self) -> Any:
        """The body as JSON, or :class:`PayloadError` naming ``body`` (see :func:`parse_json`)."""
        return parse_json(self.body)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes) -> Any:
    """Parse a callback body as RFC 8259 JSON, or raise :class:`PayloadError` naming ``body``.

    Stricter than ``json.loads(bytes)`` in what a platform never sends and a database cannot
    take: the body must be UTF-8 (``json.loads`` would guess UTF-16/32 from NUL bytes and let
    encoded surrogates through), ``NaN``/``Infinity`` are refused, and nesting too deep for the
    parser is a 400 rather than a ``RecursionError``. One parse, no per-object hook.
    """
    import json

    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise PayloadError("body is not UTF-8", "body") from None
    except RecursionError:
        raise PayloadError("body nests too deeply", "body") from None
    except ValueError:
        raise PayloadError("body is not JSON", "body") from None


@dataclass(frozen=True)
class IngestOutcome:
    """What the hub did with a verified callback; given to :meth:`Source.respond`.

    ``stored`` counts new events, ``duplicates`` events already stored before (a retry),
    ``ignored`` is true when the source parsed the request into no events (an event type
    the hub does not act on, or a platform's connection test).
    """

    stored: int
    duplicates: int
    ignored: bool
    event_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class OutboundMessage:
    """One rendered message for one recipient on one channel; given to :meth:`Sink.send`.

    ``parts`` holds the rendered template files of the sink's channel keyed by their extension
    (``{"subject": …, "html": …, "txt": …}`` for e-mail); sinks that render remotely (WhatsApp
    templates, see :attr:`Sink.renders_templates`) get ``{}`` and use ``context`` instead.
    ``template`` is the step's template name, which such sinks map to the provider's own
    template. ``delivery_id`` is stable across retries of this message: use it as the
    provider's idempotency key where the provider has one.
    """

    tenant: str
    journey_id: int
    step_index: int
    delivery_id: int
    channel: str
    to: str
    locale: str
    parts: Mapping[str, str]
    context: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    template: str = ""


@dataclass(frozen=True)
class DemoRequest:
    """A correctly signed sample callback that ``hub demo`` posts to a running hub."""

    headers: Mapping[str, str]
    body: bytes
    description: str


# --------------------------------------------------------------------------------------------
# What plugins give to the hub
# --------------------------------------------------------------------------------------------


class Source:
    """A platform that posts callbacks to ``POST /webhooks/<tenant>/<name>``.

    Subclass it and return an instance from :func:`hub_sources`. Class attributes:

    ``name``
        URL segment and tenant-file table name (``[sources.<name>]``); unique across plugins.
    ``config_schema``
        marshmallow ``Schema`` class for the tenant's table. The core adds and strips its own
        keys (``abandon_after``, ``attribution_window``) before the plugin's schema sees it.
    ``infers_abandonment``
        True when the platform never says "abandoned" itself (Shopify): each
        ``checkout.updated`` then (re)schedules a check after the tenant's ``abandon_after``
        (default ``default_abandon_after``), and the core emits ``checkout.abandoned`` when
        nothing converted or deleted the checkout by then.
    ``consent_fields``
        for consent evidence: per channel kind, the platform field the event's ``consent``
        value was read from (``{"email": "customer.email_marketing_consent.state"}``). Every
        message records it next to the value; a channel not named here is recorded as
        ``consent.<channel>`` of the normalized event.
    """

    name: ClassVar[str]
    config_schema: ClassVar[type]
    infers_abandonment: ClassVar[bool] = False
    default_abandon_after: ClassVar[str] = "15m"
    consent_fields: ClassVar[Mapping[str, str]] = {}

    def verify(self, request: InboundRequest, config: Mapping[str, Any]) -> None:
        """Prove that ``request`` was sent by the platform for this tenant.

        Called before anything reads the body. Raise :class:`VerificationError` when it was
        not; any other exception is treated the same (401), so the hub never answers 500 to a
        forged request.
        """
        raise NotImplementedError

    def parse(self, request: InboundRequest, config: Mapping[str, Any]) -> list[dict]:
        """Turn a verified request into zero or more normalized events.

        Each event is a dict shaped like :class:`hub.EventSchema` (without ``tenant``,
        ``source`` and ``raw``, which the hub fills in). Return ``[]`` for callbacks the hub
        does not act on (other event types, connection tests): they are answered 2xx and
        stored nowhere. Raise :class:`PayloadError` naming the field for unusable content.
        """
        raise NotImplementedError

    def respond(self, outcome: IngestOutcome) -> tuple[str, int, dict[str, str]] | None:
        """Return ``(body, status, headers)`` when the platform expects a particular answer.

        ``None`` (the default) answers ``202`` with a JSON summary. Digistore24, for example,
        needs the plain-text body ``OK``.
        """
        return None

    def demo_request(self, config: Mapping[str, Any], now: datetime) -> DemoRequest | None:
        """Return a signed sample abandonment for ``hub demo``, or ``None`` for no sample."""
        return None

    def preview_headers(self, config: Mapping[str, Any]) -> Mapping[str, str]:
        """Return headers every real callback carries but a payload saved to a file lacks.

        ``hub flow preview --source`` parses a file as if it had been posted; what the user
        cannot know is the platform's delivery id or send time. Return placeholders for those
        (``{"X-Acme-Delivery": "preview"}``); headers given with ``--header`` win, and what
        the payload *means* (an event type header) is the user's to give. A preview never
        verifies, so return no signature. The default returns none.
        """
        return {}


class Sink:
    """A way to reach a customer (or the shop's staff) on one channel.

    Subclass it and return an instance from :func:`hub_sinks`. One instance serves every
    tenant in a worker process, so it may keep connections (an SMTP connection, a
    ``requests.Session``) keyed by config, but no tenant data between calls. Class attributes:

    ``name``
        the tenant-file table name (``[sinks.<name>]``) and the name steps list in
        ``channels``; unique across plugins.
    ``channel``
        the channel kind: ``email``, ``whatsapp``, ``webpush``, ``ticket``, … Consent,
        unsubscribe, frequency caps and template files (``<channel>.<locale>.<ext>``) are per
        channel kind.
    ``needs_consent``
        False for sinks whose recipient is not the customer (tickets for the shop's staff) or
        whose address *is* the consent (a push subscription).
    ``idempotent``
        True when the provider deduplicates on the ``delivery_id`` we send, so a send whose
        outcome is unknown may safely be retried.
    ``max_attempts``
        how many times a retryable failure is retried before it counts as permanent.
    ``renders_templates``
        False for sinks whose message text lives at the provider (WhatsApp templates approved
        by Meta): the hub then renders no ``<channel>.<locale>.<ext>`` files, a missing file is
        no failure, and :attr:`OutboundMessage.parts` is empty; ``locale`` is the customer's
        locale, else the tenant's.
    ``audience``
        ``"customer"`` (default) or ``"staff"``: messages for the shop's own people (tickets)
        are written in the tenant's ``staff_locale``, not in the customer's language.
    """

    name: ClassVar[str]
    channel: ClassVar[str]
    config_schema: ClassVar[type]
    needs_consent: ClassVar[bool] = True
    idempotent: ClassVar[bool] = False
    max_attempts: ClassVar[int] = 5
    renders_templates: ClassVar[bool] = True
    audience: ClassVar[str] = "customer"
    template_dirs: ClassVar[tuple[str, ...]] = ()

    def address(
        self, customer: Mapping[str, Any], config: Mapping[str, Any], context: Mapping[str, Any]
    ) -> str | None:
        """Return where to send for this customer (an e-mail, an E.164 phone, …) or ``None``.

        ``None`` means "no usable address": the engine records it and tries the next channel.
        Raise :class:`PermanentError` with a reason when an address exists but is unusable.
        """
        raise NotImplementedError

    def send(self, message: OutboundMessage, config: Mapping[str, Any]) -> str | None:
        """Send one message; return the provider's message id when it gives one.

        Raise :class:`RetryableError`, :class:`PermanentError` or :class:`OutcomeUnknown`.
        Never sleep and never retry inside: the engine schedules retries.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class ProbeQuestion:
    """What a :class:`ConversionProbe` is asked about: one journey's checkout, right before a
    step fires.

    ``checkout_id`` is the id the source's :meth:`Source.parse` gave the abandonment;
    ``email`` the customer's (lower-cased) address when known; ``abandoned_at`` when the
    platform said the checkout was abandoned (timezone-aware UTC); ``event`` the stored
    normalized event (without ``raw``), for anything else the platform needs to be asked.
    """

    tenant: str
    source: str
    checkout_id: str
    email: str | None
    abandoned_at: datetime | None
    event: Mapping[str, Any]


class ConversionProbe:
    """Asks a source's platform whether an abandoned checkout was completed after all.

    Webhooks get lost and arrive late; a reminder sent after the customer paid costs trust.
    Return one from :func:`hub_conversion_probes` and the hub asks it right before each step
    of a journey of that source fires (tenants may turn it off, ``[probe] enabled = false``).

    ``source``
        the :attr:`Source.name` it answers for; the tenant's table of that source is the
        ``config`` every call gets (keep the platform's API key there). One probe per source:
        two plugins probing the same source is a start-up error naming both.
    """

    source: ClassVar[str]

    def ready(self, config: Mapping[str, Any]) -> bool:
        """Whether this tenant's table lets the probe ask (an API key is configured).

        Called before each question, so keep it to a look at ``config``. A tenant whose
        probe is not ready is not asked; nothing is counted as a failure.
        """
        return True

    def converted(self, question: ProbeQuestion, config: Mapping[str, Any], timeout: float) -> bool:
        """``True`` when the platform says the checkout was completed, ``False`` when not.

        Pass ``timeout`` (seconds, the tenant's ``[probe] timeout``) to every HTTP call; the
        hub stops waiting after it anyway and sends. Raise any exception when the platform
        cannot answer (5xx, an answer that is not what its API documents): the step then
        proceeds, and the hub counts and logs the failure. Never retry or sleep here.
        """
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# The hooks
# --------------------------------------------------------------------------------------------


@hookspec
def hub_sources(services: PluginServices) -> list[Source]:
    """Return the :class:`Source` objects this plugin provides.

    Called once when the app is built. Two plugins returning the same ``name`` is a start-up
    error naming both. ``services`` (optional: declare the argument only if you need it) is
    this plugin's :class:`hub.PluginServices`; keep it on the object for later calls.
    """


@hookspec
def hub_sinks(services: PluginServices) -> list[Sink]:
    """Return the :class:`Sink` objects this plugin provides.

    Called once when the app is built, so return new instances: each app gets its own. Two
    plugins returning the same ``name`` is a start-up error naming both. ``services``
    (optional) is this plugin's :class:`hub.PluginServices`: the pooled outbound HTTP session,
    the public URL, its key → JSON data. Pass it to the sink (``AcmeSms(services)``); its
    methods work from the first ``address``/``send`` on, not inside this hook.
    """


@hookspec
def hub_blueprints(services: PluginServices) -> list[Any]:
    """Return Flask blueprints with extra routes (status callbacks, subscription endpoints).

    Blueprints are mounted under ``/plugins/<plugin name>/``. Build them here, per call, when
    the views need ``services`` (optional): through it a view reads the tenant's table
    (``services.config(tenant)``), records a provider's status, suppresses an address, keeps
    its own data and answers errors in the hub's one JSON shape (``services.error_response``).
    A plugin never touches the database directly.
    """


@hookspec
def hub_commands(services: PluginServices) -> list[Any]:
    """Return Click commands to add under ``hub <plugin name> …``.

    Commands run inside the app context, like the built-in ones; ``services`` (optional) is
    this plugin's :class:`hub.PluginServices`.
    """


@hookspec
def hub_template_filters() -> dict[str, Any]:
    """Return ``{name: function}`` Jinja2 filters for message templates.

    Templates run in a sandbox; filters must be pure functions of their arguments. A name
    another plugin or Jinja2 itself already has is a start-up error naming both, and neither
    plugin's filter of that name is used (never "last one wins").
    """


@hookspec
def hub_erase_person(
    services: PluginServices,
    tenant: str,
    email: str | None,
    phone: str | None,
    checkout_ids: list[str],
    dry_run: bool,
) -> int:
    """Forget what this plugin keeps about one person of ``tenant``; return how many entries.

    Called when an operator erases a person (``hub erase``, the REST API), after the hub has
    erased its own tables, so a plugin that keeps per-person data in ``services.data`` (push
    subscriptions bound to an e-mail, a CRM contact id) can honour the request too. ``email``
    is lower-cased, ``phone`` is E.164, either may be ``None``; ``checkout_ids`` are the
    person's checkouts the hub knew (a subscription bound to a checkout is theirs as well).
    With ``dry_run`` change nothing and return how many entries would go. Take only the
    arguments you need. An exception is reported with the plugin's name and makes the erasure
    incomplete (the operator sees it and runs it again); entries the hub still finds holding the
    address in your data afterwards are reported the same way. Called rarely, so it may do I/O
    (tell a CRM to delete its contact) within a few seconds.
    """


@hookspec
def hub_conversion_probes(services: PluginServices) -> list[ConversionProbe]:
    """Return :class:`ConversionProbe` objects for sources whose platform can be asked.

    Optional: a source without a probe is simply never asked. Called once when the app is
    built. ``services`` (optional) gives the pooled outbound HTTP session under the operator's
    network policy and CA bundle (``services.http_session()``): use it for the platform's API,
    so the same rules apply as to every other call the hub makes.
    """
