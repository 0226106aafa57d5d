"""Stripe Checkout: ``checkout.session.expired`` → abandoned, ``completed`` → converted."""

from hub import PluginServices, hookimpl
from plugins.stripe.probe import StripeProbe
from plugins.stripe.source import StripeSource


@hookimpl
def hub_sources() -> list:
    return [StripeSource()]


@hookimpl
def hub_conversion_probes(services: PluginServices) -> list:
    return [StripeProbe(services)]
