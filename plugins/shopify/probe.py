"""Asking Shopify whether an abandoned checkout was completed after all.

One GraphQL Admin API query (``POST /admin/api/<version>/graphql.json`` with the app's
``X-Shopify-Access-Token``) reads the checkout's ``completedAt`` through ``node`` with the
checkout's global id (``gid://shopify/AbandonedCheckout/<id>``); a completed checkout is the
order for it. The token needs the ``read_orders`` scope. A checkout keyed only by its token
(``token:…``, see ``mapping.checkout_key``) has no id to ask by and counts as not converted.
Shopify answers a failed query with HTTP 200 and ``errors``: that is a probe failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub import ConversionProbe, PluginServices, ProbeQuestion, request_json

QUERY = (
    "query CheckoutCompleted($id: ID!) "
    "{ node(id: $id) { ... on AbandonedCheckout { id completedAt } } }"
)


class ShopifyProbe(ConversionProbe):
    source = "shopify"

    def __init__(self, services: PluginServices) -> None:
        self.services = services

    def ready(self, config: Mapping[str, Any]) -> bool:
        return bool(config.get("admin_access_token"))

    def converted(self, question: ProbeQuestion, config: Mapping[str, Any], timeout: float) -> bool:
        if not question.checkout_id.isdigit():
            return False
        base = (config.get("admin_base") or f"https://{config['shop_domain']}").rstrip("/")
        answer = request_json(
            self.services.http_session(),
            "POST",
            f"{base}/admin/api/{config['api_version']}/graphql.json",
            what="Shopify checkout",
            timeout=timeout,
            headers={"X-Shopify-Access-Token": config["admin_access_token"]},
            body={
                "query": QUERY,
                "variables": {"id": f"gid://shopify/AbandonedCheckout/{question.checkout_id}"},
            },
        )
        if not isinstance(answer, dict) or answer.get("errors"):
            raise ValueError(f"Shopify: query failed: {str(answer.get('errors'))[:200]}")
        data = answer.get("data")
        if not isinstance(data, dict) or "node" not in data:
            raise ValueError("Shopify: the answer has no data.node")
        node = data["node"]
        if node is None:  # Shopify does not know it (deleted, or never abandoned there)
            return False
        if not isinstance(node, dict):
            raise ValueError("Shopify: data.node is not an object")
        return node.get("completedAt") is not None
