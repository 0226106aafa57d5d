"""Generic signed webhook (Standard Webhooks) carrying the hub's own normalized event, plus the
published JSON Schema of that event at ``/plugins/webhook/schema.json``."""

from hub import hookimpl


@hookimpl
def hub_sources() -> list:
    from plugins.webhook.source import WebhookSource

    return [WebhookSource()]


@hookimpl
def hub_blueprints() -> list:
    from plugins.webhook.views import blueprint

    return [blueprint]
