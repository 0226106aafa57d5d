"""Stripe Checkout: ``checkout.session.expired`` → abandoned, ``completed`` → converted."""

from hub import hookimpl
from plugins.stripe.source import StripeSource


@hookimpl
def hub_sources() -> list:
    return [StripeSource()]
