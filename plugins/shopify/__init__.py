"""Shopify: checkouts/* → inferred abandonment, orders/* → conversion, delete → stop."""

from hub import hookimpl
from plugins.shopify.source import ShopifySource


@hookimpl
def hub_sources() -> list:
    return [ShopifySource()]
