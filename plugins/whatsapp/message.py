"""From the hub's message context to the Cloud API's template message.

Pure functions, no I/O: what the stand-in in the tests asserts is exactly what these build.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import phonenumbers

from hub import OutboundMessage, PermanentError, mask, to_e164

# a customer's WhatsApp account is a personal number; these kinds never are
NOT_PERSONAL = {
    phonenumbers.PhoneNumberType.TOLL_FREE: "toll-free",
    phonenumbers.PhoneNumberType.PREMIUM_RATE: "premium-rate",
    phonenumbers.PhoneNumberType.SHARED_COST: "shared-cost",
    phonenumbers.PhoneNumberType.PAGER: "pager",
    phonenumbers.PhoneNumberType.UAN: "company (UAN)",
    phonenumbers.PhoneNumberType.VOICEMAIL: "voicemail",
}


def normalize_phone(raw: str, country: str | None) -> str:
    """The customer's number in E.164 (``+4915112345678``), or :class:`PermanentError`.

    Sources already deliver E.164; parsing again with the customer's country catches numbers
    that only look like one and kinds of numbers no customer's WhatsApp can be on.
    """
    e164 = to_e164(raw, country)
    if e164 is None:
        raise PermanentError(f"phone {mask(raw)} is not a valid number")
    kind = NOT_PERSONAL.get(phonenumbers.number_type(phonenumbers.parse(e164)))
    if kind:
        raise PermanentError(f"phone {mask(raw)} is a {kind} number, not a customer's WhatsApp")
    return e164


def variables(context: Mapping[str, Any]) -> dict[str, str | None]:
    """The values a tenant can map to template variables, from the context every sink gets."""
    customer = context.get("customer") or {}
    cart = context.get("cart") or {}
    offer = context.get("offer") or {}
    tenant = context.get("tenant") or {}
    return {
        "first_name": customer.get("first_name"),
        "name": customer.get("name"),
        "cart_total": cart.get("total_display"),  # already formatted for the customer's locale
        "recovery_url": context.get("recovery_url"),
        "support": tenant.get("support"),
        "promo_code": offer.get("promo_code"),
        "shop": tenant.get("name"),
    }


def parameter_text(value: str) -> str:
    """Meta rejects parameters with new lines, tabs or more than four spaces in a row."""
    text = re.sub(r"[\t\r\n]+", " ", value)
    return re.sub(r" {5,}", "    ", text).strip()


def language_code(template: Mapping[str, Any], locale: str) -> str:
    """The approved translation to send: fixed, the best listed one, or the locale's language.

    ``locale`` is the customer's (``de_AT``), else the tenant's. Meta's codes are mostly the
    bare language (``de``, ``fr``) and sometimes language_REGION (``en_US``, ``pt_BR``).
    """
    if template.get("language"):
        return template["language"]
    locale = (locale or "en").replace("-", "_")
    candidates = [locale, locale.split("_")[0]]
    listed = template.get("languages") or []
    if listed:
        return next((c for c in candidates if c in listed), listed[0])
    return candidates[1]


def button_suffix(value: str, variable: str, public_url: str) -> str:
    """A URL button takes only the end of its URL: strip the hub's own base from our links.

    The template's button is defined at Meta as ``<HUB_PUBLIC_URL>/{{1}}``; a tracked recovery
    link ``<HUB_PUBLIC_URL>/r/<token>`` then fills ``{{1}}`` with ``r/<token>``.
    """
    if variable != "recovery_url":
        return value
    base = public_url.rstrip("/") + "/"
    if not value.startswith(base):
        raise PermanentError(f"recovery link does not start with HUB_PUBLIC_URL ({base})")
    return value[len(base) :]


def build_payload(
    message: OutboundMessage, template: Mapping[str, Any], public_url: str
) -> dict[str, Any]:
    """The JSON body of ``POST /{phone-number-id}/messages`` for one template message.

    An empty variable would be rejected by Meta (and read oddly): use the template's
    ``defaults`` or fail permanently so the engine falls back to the next channel.
    """
    values = variables(message.context)
    for key, fallback in (template.get("defaults") or {}).items():
        if not values.get(key):
            values[key] = fallback

    def value_of(variable: str) -> str:
        text = parameter_text(str(values.get(variable) or ""))
        if not text:
            raise PermanentError(
                f"template variable {variable!r} is empty for this customer "
                f"(set [sinks.whatsapp.templates.{message.template}.defaults] {variable})"
            )
        return text

    components: list[dict[str, Any]] = []
    if template.get("body"):
        components.append(
            {
                "type": "body",
                "parameters": [{"type": "text", "text": value_of(v)} for v in template["body"]],
            }
        )
    variable = template.get("button_url_param")
    if variable:
        suffix = button_suffix(value_of(variable), variable, public_url)
        components.append(
            {
                "type": "button",
                "sub_type": "url",
                "index": "0",
                "parameters": [{"type": "text", "text": suffix}],
            }
        )
    body: dict[str, Any] = {"name": template["name"]}
    body["language"] = {"code": language_code(template, message.locale)}
    if components:
        body["components"] = components
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.to.lstrip("+"),  # E.164 digits, as Meta's examples and every wa_id
        "type": "template",
        "template": body,
        # echoed in status webhooks: ties a status to our ledger even without the wamid
        "biz_opaque_callback_data": (
            f"journey:{message.journey_id}:step:{message.step_index}:delivery:{message.delivery_id}"
        ),
    }
