"""Standard Web Push (RFC 8030/8291/8292): browser subscriptions in, encrypted pushes out.

The storefront registers a ``PushSubscription`` at ``/plugins/webpush/<tenant>/subscriptions``;
the ``webpush`` sink finds it by checkout id, e-mail or customer id and pushes the rendered
``webpush.<locale>.title`` / ``.body`` templates. See docs/webpush.md.
"""

from hub import PluginServices, hookimpl
from plugins.webpush.routes import make_blueprint
from plugins.webpush.sink import WebPushSink


@hookimpl
def hub_sinks(services: PluginServices) -> list:
    return [WebPushSink(services)]


@hookimpl
def hub_blueprints(services: PluginServices) -> list:
    return [make_blueprint(services)]
