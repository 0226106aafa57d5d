"""Contract: what a plugin may do at run time, through one narrow object per plugin.

The hub builds one :class:`PluginServices` per loaded plugin and hands it to the plugin's hooks
that ask for it (``def hub_sinks(services): …``, see ``hub.hookspecs``). It offers exactly what
plugins need and nothing of the core: the plugin's own table of a tenant's file, its own
key → JSON data, recording a provider's status callback, suppressing an address, the public URL,
the hub's one error shape, and outbound HTTP bound to the operator's policy. A plugin never
touches the database, Redis or another plugin's data. The methods work once the hub is built
(in a request, a job or a command), not inside the hook call itself.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from hub.attribution import PROVIDER_FACTS, record_tracking
from hub.store import deliveries, delivery_log, journeys, plugin_data, suppressions

if TYPE_CHECKING:
    import requests
    from flask import Response

    from hub.outbound import NetworkPolicy

# provider statuses only move forward: a late "sent" never overwrites "read"
STATUS_RANK = {"sending": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}


class PluginData:
    """A small per-plugin, per-tenant key → JSON store (e.g. push subscriptions).

    Values are JSON objects (dicts). Keys are the plugin's own; another plugin's or another
    tenant's entries are never visible. Every call is one short transaction.
    """

    def __init__(self, store: Any, plugin: str) -> None:
        self.store = store
        self.plugin = plugin

    def put(self, tenant: str, key: str, value: dict) -> None:
        """Store ``value`` under ``key`` for ``tenant``, replacing what was there."""
        now = datetime.now(UTC)
        where = (
            plugin_data.c.plugin == self.plugin,
            plugin_data.c.tenant == tenant,
            plugin_data.c.key == key,
        )
        with self.store.begin() as conn:
            updated = conn.execute(
                sa.update(plugin_data).where(*where).values(value=value, updated_at=now)
            ).rowcount
            if not updated:
                conn.execute(
                    sa.insert(plugin_data).values(
                        plugin=self.plugin, tenant=tenant, key=key, value=value, updated_at=now
                    )
                )

    def get(self, tenant: str, key: str) -> dict | None:
        """The value under ``key`` for ``tenant``, or ``None``."""
        with self.store.begin() as conn:
            row = conn.execute(
                sa.select(plugin_data.c.value).where(
                    plugin_data.c.plugin == self.plugin,
                    plugin_data.c.tenant == tenant,
                    plugin_data.c.key == key,
                )
            ).first()
        return row.value if row else None

    def delete(self, tenant: str, key: str) -> bool:
        """Forget ``key``; ``False`` when there was nothing to forget."""
        with self.store.begin() as conn:
            return bool(
                conn.execute(
                    sa.delete(plugin_data).where(
                        plugin_data.c.plugin == self.plugin,
                        plugin_data.c.tenant == tenant,
                        plugin_data.c.key == key,
                    )
                ).rowcount
            )

    def find(self, tenant: str, prefix: str = "") -> dict[str, dict]:
        """Every ``{key: value}`` of ``tenant`` whose key starts with ``prefix``."""
        with self.store.begin() as conn:
            rows = conn.execute(
                sa.select(plugin_data.c.key, plugin_data.c.value).where(
                    plugin_data.c.plugin == self.plugin,
                    plugin_data.c.tenant == tenant,
                    plugin_data.c.key.startswith(prefix, autoescape=True),
                )
            ).all()
        return {r.key: r.value for r in rows}


def record_provider_status(
    store: Any, sink: str, provider_id: str, status: str, reason: str | None = None
) -> bool:
    """A provider's status callback (delivered, read, failed) for a message we sent.

    Looks the delivery up by the id ``Sink.send`` returned. Statuses only move forward
    (sent → delivered → read; failed is final); every callback is kept in the delivery log.
    Returns False when no delivery has that id (within ``tenant`` when given).
    """
    now = datetime.now(UTC)
    with store.begin() as conn:
        row = conn.execute(
            sa.select(deliveries).where(
                deliveries.c.sink == sink, deliveries.c.provider_id == provider_id
            )
        ).first()
        if row is None:
            return False
        journey = conn.execute(
            sa.select(journeys.c.tenant).where(journeys.c.id == row.journey_id)
        ).first()
        conn.execute(
            sa.insert(delivery_log).values(
                tenant=journey.tenant,
                journey_id=row.journey_id,
                step_index=row.step_index,
                sink=sink,
                channel=row.channel,
                delivery_id=row.id,
                attempt=row.attempts,
                status=status,
                reason=reason,
                at=now,
            )
        )
        # attribution: delivered / read are tracking facts, once per message (hub.attribution)
        for kind in PROVIDER_FACTS.get(status, ()):
            record_tracking(conn, store, row, kind, now, reason, log_line=False)
        if STATUS_RANK.get(status, -1) > STATUS_RANK.get(row.status, -1):
            conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.id == row.id)
                .values(status=status, reason=reason, updated_at=now)
            )
    return True


def suppress(store: Any, tenant: str, identity: str, channel: str, reason: str) -> bool:
    """Stop messaging ``identity`` (e-mail or E.164 phone) on ``channel`` (``"*"`` = all).

    For providers that report an opt-out (WhatsApp's "user stopped marketing messages");
    every later step checks suppressions before sending. Returns False if already suppressed.
    """
    identity = identity.strip().lower()
    with store.begin() as conn:
        exists = conn.execute(
            sa.select(suppressions.c.id).where(
                suppressions.c.tenant == tenant,
                suppressions.c.identity == identity,
                suppressions.c.channel == channel,
            )
        ).first()
        if exists:
            return False
        conn.execute(
            sa.insert(suppressions).values(
                tenant=tenant,
                identity=identity,
                channel=channel,
                reason=reason,
                created_at=datetime.now(UTC),
            )
        )
    return True


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    """The hub's one JSON error shape: ``{"code", "message", "field"}`` with ``status``.

    ``code`` is stable and machine-readable (``not_found``, ``invalid_subscription``),
    ``message`` is for a person, ``field`` names the culprit where there is one.
    """
    from flask import jsonify

    response = jsonify({"code": code, "message": message, "field": field})
    response.status_code = status
    return response


class PluginServices:
    """What one plugin may do at run time; handed to its hooks as ``services``.

    One instance per plugin and app. Everything is scoped to the plugin: :meth:`config` returns
    only the tables of its own sinks and sources, :attr:`data` only its own key → JSON store.
    """

    def __init__(self, plugin: str, sinks: list[str], sources: list[str]) -> None:
        self.plugin = plugin
        self._sinks = sinks  # filled by the plugin manager as the plugin's hooks return
        self._sources = sources
        self._hub: Any = None
        self._lock = threading.Lock()
        self._session: requests.Session | None = None

    def attach(self, hub: Any) -> None:
        """Called by the core once the hub exists; plugins never call it."""
        self._hub = hub
        self._session = None

    @property
    def hub(self) -> Any:
        if self._hub is None:
            raise RuntimeError(
                f"plugin {self.plugin!r}: services work once the hub is built (in a request, "
                "a job or a command), not inside the hook call"
            )
        return self._hub

    # -- configuration
    def config(self, tenant: str, name: str | None = None) -> Mapping[str, Any] | None:
        """The loaded ``[sinks.<name>]`` / ``[sources.<name>]`` table of ``tenant``.

        ``name`` may be left out when the plugin provides one sink or source. ``None`` when the
        tenant does not exist or has not enabled it (answer 404 then). Asking for a table of
        another plugin is a ``LookupError``.
        """
        owned = [("sinks", n) for n in self._sinks] + [("sources", n) for n in self._sources]
        if name is not None:
            owned = [(kind, n) for kind, n in owned if n == name]
        if len(owned) != 1:
            raise LookupError(
                f"plugin {self.plugin!r} provides {len(owned)} tables named {name or 'anything'};"
                " pass the name of one of its own sinks or sources"
            )
        kind, table = owned[0]
        found = self.hub.tenants.get(tenant)
        if found is None:
            return None
        return getattr(found, kind).get(table) or None

    # -- state
    @property
    def data(self) -> PluginData:
        """This plugin's per-tenant key → JSON store (push subscriptions, seen callbacks)."""
        return PluginData(self.hub.store, self.plugin)

    def record_provider_status(
        self, provider_id: str, status: str, reason: str | None = None, *, sink: str | None = None
    ) -> bool:
        """Record a provider's callback (``sent``, ``delivered``, ``read``, ``failed``).

        ``provider_id`` is what the sink's ``send`` returned. Statuses only move forward; every
        callback lands in the delivery log. ``sink`` may be left out when the plugin has one.
        Returns ``False`` when no delivery of that sink has that id.
        """
        if sink is None:
            if len(self._sinks) != 1:
                raise LookupError(f"plugin {self.plugin!r}: pass sink= (one of {self._sinks})")
            sink = self._sinks[0]
        elif sink not in self._sinks:
            raise LookupError(f"plugin {self.plugin!r} does not provide the sink {sink!r}")
        return record_provider_status(self.hub.store, sink, provider_id, status, reason)

    def suppress(self, tenant: str, identity: str, channel: str, reason: str) -> bool:
        """Never message ``identity`` (e-mail or E.164 phone) on ``channel`` (``"*"``: any).

        For a provider's opt-out report ("user stopped marketing messages"). ``False`` when
        already suppressed.
        """
        return suppress(self.hub.store, tenant, identity, channel, reason)

    # -- the outside world
    def public_url(self) -> str:
        """``HUB_PUBLIC_URL``: the base of every link the hub sends (no trailing slash)."""
        return self.hub.public_url()

    def error_response(
        self, status: int, code: str, message: str, field: str | None = None
    ) -> Response:
        """The hub's one JSON error shape, for a plugin's routes (see :func:`error_response`)."""
        return error_response(status, code, message, field)

    @property
    def network_policy(self) -> NetworkPolicy:
        """The operator's outbound policy (allowed private networks, extra CA bundle)."""
        from hub.outbound import NetworkPolicy

        settings = self.hub.settings
        return NetworkPolicy(settings.allow_private_networks, settings.ca_bundle)

    def http_session(self) -> requests.Session:
        """This plugin's pooled ``requests.Session``, bound to :attr:`network_policy`.

        SSRF-safe, no redirects, the operator's CAs (see ``hub.outbound``). Pass
        ``allow_redirects=False`` and a ``timeout`` to every call; classify failures with
        ``hub.outbound.classify_request_error`` / ``classify_status``.
        """
        from hub.outbound import new_session

        with self._lock:
            if self._session is None:
                self._session = new_session(self.network_policy)
            return self._session

    def tls_context(self, *, cafile: str | None = None) -> ssl.SSLContext:
        """A verifying TLS client context with the operator's CAs, for protocols other than
        HTTP (SMTP). ``cafile`` replaces the store (only for deprecated per-sink keys)."""
        from hub.outbound import tls_context

        return tls_context(self.network_policy, cafile=cafile)
