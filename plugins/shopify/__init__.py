"""Shopify: checkouts/* → inferred abandonment, orders/* → conversion, delete → stop."""

from hub import PluginServices, hookimpl
from plugins.shopify.probe import ShopifyProbe
from plugins.shopify.source import ShopifySource


@hookimpl
def hub_sources() -> list:
    return [ShopifySource()]


@hookimpl
def hub_conversion_probes(services: PluginServices) -> list:
    return [ShopifyProbe(services)]
