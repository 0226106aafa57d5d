"""Standard Web Push (RFC 8030/8291/8292): browser subscriptions in, encrypted pushes out.

The storefront registers a ``PushSubscription`` at ``/plugins/webpush/<tenant>/subscriptions``;
the ``webpush`` sink finds it by checkout id, e-mail or customer id and pushes the rendered
``webpush.<locale>.title`` / ``.body`` templates. See docs/webpush.md.
"""

from hub import PluginServices, hookimpl
from plugins.webpush.routes import make_blueprint
from plugins.webpush.sink import WebPushSink
from plugins.webpush.subscriptions import SubscriptionBook


@hookimpl
def hub_sinks(services: PluginServices) -> list:
    return [WebPushSink(services)]


@hookimpl
def hub_blueprints(services: PluginServices) -> list:
    return [make_blueprint(services)]


@hookimpl
def hub_erase_person(
    services: PluginServices,
    tenant: str,
    email: str | None,
    checkout_ids: list[str],
    dry_run: bool,
) -> int:
    """A subscription bound to the person's e-mail or checkouts is theirs: it goes, with the
    index entries pointing at it (the browser's other bindings name the person too)."""
    return SubscriptionBook(services.data).forget_person(tenant, email, checkout_ids, dry_run)
