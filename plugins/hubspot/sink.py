"""HubSpot CRM: a task (default) or a ticket for the shop's staff, linked to the contact.

Two calls with a private app's bearer token (HubSpot's API reference):

1. when the customer's e-mail is known, ``POST /crm/v3/objects/contacts/batch/upsert`` finds or
   creates the contact by e-mail (safe to repeat) and returns its id;
2. ``POST /crm/v3/objects/tasks`` (association type 204, task → contact) or
   ``POST /crm/v3/objects/tickets`` (type 16, ticket → contact) creates the object.

HubSpot has no idempotency key on create, so this sink is not idempotent: a create whose answer
is lost (read timeout) is reported as outcome unknown and not repeated — a second task for the
same prospect would be worse than a missing one. Without an e-mail the object is created
unassociated; the phone number is in its text.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, fields, validate

from hub import OutboundMessage, TicketSink, priority_field, ticket_text, timeout_field, url_field

log = logging.getLogger("hub.tickets.hubspot")

DEFAULT_BASE_URL = "https://api.hubapi.com"
# HubSpot-defined association types (HubSpot's API reference)
TASK_TO_CONTACT = 204
TICKET_TO_CONTACT = 16
# our priority vocabulary -> hs_task_priority / hs_ticket_priority (LOW, MEDIUM, HIGH)
PRIORITY = {"low": "LOW", "normal": "MEDIUM", "high": "HIGH", "urgent": "HIGH"}


class HubSpotConfig(Schema):
    access_token = fields.String(
        required=True, validate=validate.Length(min=1), metadata={"secret": True}
    )
    base_url = url_field()
    create = fields.String(load_default="task", validate=validate.OneOf(("task", "ticket")))
    priority = priority_field()
    task_type = fields.String(
        load_default="TODO", validate=validate.OneOf(("TODO", "CALL", "EMAIL"))
    )
    owner_id = fields.String(load_default=None)
    pipeline = fields.String(load_default="0")
    pipeline_stage = fields.String(load_default="1")
    timeout = timeout_field()


def contact_upsert_payload(customer: Mapping[str, Any]) -> dict:
    """Batch upsert of one contact keyed by e-mail; only the properties we actually know."""
    properties = {
        "email": customer["email"],
        "firstname": customer.get("first_name"),
        "lastname": customer.get("last_name"),
        "phone": customer.get("phone"),
    }
    return {
        "inputs": [
            {
                "id": customer["email"],
                "idProperty": "email",
                "properties": {k: v for k, v in properties.items() if v},
            }
        ]
    }


def task_payload(
    message: OutboundMessage, config: Mapping[str, Any], contact_id: str | None, now: datetime
) -> dict:
    subject, body = ticket_text(message)
    properties = {
        # due now: the point is to call while the cart is still warm
        "hs_timestamp": now.astimezone(UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "hs_task_subject": subject,
        # the task body is rich text: keep the line breaks of the plain-text template
        "hs_task_body": html.escape(body).replace("\n", "<br>"),
        "hs_task_status": "NOT_STARTED",
        "hs_task_priority": PRIORITY[config["priority"]],
        "hs_task_type": config["task_type"],
    }
    if config["owner_id"]:
        properties["hubspot_owner_id"] = config["owner_id"]
    return {"properties": properties, "associations": _associate(contact_id, TASK_TO_CONTACT)}


def ticket_payload(
    message: OutboundMessage, config: Mapping[str, Any], contact_id: str | None
) -> dict:
    subject, body = ticket_text(message)
    properties = {
        "subject": subject,
        "content": body,
        "hs_pipeline": config["pipeline"],
        "hs_pipeline_stage": config["pipeline_stage"],
        "hs_ticket_priority": PRIORITY[config["priority"]],
    }
    if config["owner_id"]:
        properties["hubspot_owner_id"] = config["owner_id"]
    return {"properties": properties, "associations": _associate(contact_id, TICKET_TO_CONTACT)}


def _associate(contact_id: str | None, type_id: int) -> list[dict]:
    if contact_id is None:
        return []
    return [
        {
            "to": {"id": contact_id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
        }
    ]


class HubSpotSink(TicketSink):
    name = "hubspot"
    config_schema = HubSpotConfig
    idempotent = False

    def send(self, message: OutboundMessage, config: Mapping[str, Any]) -> str | None:
        """Upsert the contact, then create the task or ticket; returns the object's id."""
        base = (config["base_url"] or DEFAULT_BASE_URL).rstrip("/")
        headers = {
            "Authorization": f"Bearer {config['access_token']}",
            "Accept": "application/json",
        }
        customer = message.context.get("customer") or {}
        contact_id = None
        if customer.get("email"):
            _, answer = self.post(
                f"{base}/crm/v3/objects/contacts/batch/upsert",
                body=json.dumps(contact_upsert_payload(customer)).encode(),
                headers=headers,
                timeout=config["timeout"],
                what="HubSpot contact upsert",
                repeatable=True,  # an upsert by e-mail: sending it twice changes nothing
            )
            contact_id = _first_result_id(answer)
        if config["create"] == "ticket":
            payload = ticket_payload(message, config, contact_id)
        else:
            payload = task_payload(message, config, contact_id, datetime.now(UTC))
        _, answer = self.post(
            f"{base}/crm/v3/objects/{config['create']}s",
            body=json.dumps(payload).encode(),
            headers=headers,
            timeout=config["timeout"],
            what=f"HubSpot {config['create']}",
        )
        try:
            return str(json.loads(answer)["id"])
        except (ValueError, KeyError, TypeError):
            return None  # created (2xx), but the answer did not carry the id


def _first_result_id(answer: bytes) -> str | None:
    try:
        return str(json.loads(answer)["results"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        # a 2xx without a result (a partial 207): the task is still worth creating
        log.warning("HubSpot contact upsert answered without a contact id; not associating")
        return None
