"""Asking Stripe whether an expired Checkout Session's customer bought after all.

An expired session never becomes ``complete``; what completes is the session its recovery URL
opens (``recovered_from`` names the expired one) or a fresh one. So the probe retrieves the
session (``GET /v1/checkout/sessions/{id}``: ``complete`` is a conversion) and then lists the
customer's sessions completed since the abandonment (``customer_details[email]``, ``status``,
``created[gte]``): the same person-level match a ``checkout.session.completed`` webhook gets.
Read with the tenant's ``api_key`` (a restricted key with read access to Checkout Sessions is
enough), pinned to ``api_version``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from hub import ConversionProbe, PluginServices, ProbeQuestion, request_json

API_BASE = "https://api.stripe.com"


class StripeProbe(ConversionProbe):
    source = "stripe"

    def __init__(self, services: PluginServices) -> None:
        self.services = services

    def ready(self, config: Mapping[str, Any]) -> bool:
        return bool(config.get("api_key"))

    def converted(self, question: ProbeQuestion, config: Mapping[str, Any], timeout: float) -> bool:
        base = (config.get("api_base") or API_BASE).rstrip("/")
        headers = {
            "Authorization": f"Bearer {config['api_key']}",
            "Stripe-Version": config["api_version"],
        }
        session_id = quote(question.checkout_id, safe="")
        session = self._get(f"{base}/v1/checkout/sessions/{session_id}", headers, timeout)
        status = session.get("status")
        if session.get("object") != "checkout.session" or not isinstance(status, str):
            raise ValueError("Stripe: the answer is not a Checkout Session")
        if status == "complete":
            return True
        if not question.email or question.abandoned_at is None:
            return False
        params = {
            "customer_details[email]": question.email,
            "status": "complete",
            "created[gte]": str(int(question.abandoned_at.timestamp())),
            "limit": "1",
        }
        listed = self._get(f"{base}/v1/checkout/sessions", headers, timeout, params)
        if listed.get("object") != "list" or not isinstance(listed.get("data"), list):
            raise ValueError("Stripe: the answer is not a list of Checkout Sessions")
        return bool(listed["data"])

    def _get(
        self,
        url: str,
        headers: Mapping[str, str],
        timeout: float,
        params: Mapping[str, str] | None = None,
    ) -> dict:
        answer = request_json(
            self.services.http_session(),
            "GET",
            url,
            what="Stripe Checkout Session",
            timeout=timeout,
            headers=headers,
            params=params,
        )
        if not isinstance(answer, dict):
            raise ValueError("Stripe: the answer is not a JSON object")
        return answer
