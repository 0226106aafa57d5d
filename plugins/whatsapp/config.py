"""The ``[sinks.whatsapp]`` table of a tenant file, validated at start-up.

The message text lives at Meta (approved templates), so the tenant only says which approved
template a flow step uses and which hub value fills each of its ``{{n}}`` variables.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates

# Graph API versions live about two years; v26.0 is the newest listed in Meta's changelog
# (released 2026-07-29). Tenants pin another one with `api_base`.
DEFAULT_API_BASE = "https://graph.facebook.com/v26.0"

# the values a tenant can map to template variables (see plugins.whatsapp.message.variables)
VARIABLES = (
    "first_name",
    "name",
    "cart_total",
    "recovery_url",
    "support",
    "promo_code",
    "shop",
)
STEP_TEMPLATE = re.compile(r"^[A-Za-z0-9_-]+$")  # as a flow step's `template`
_variable = validate.OneOf(VARIABLES, error="unknown variable {input!r}; use one of {choices}")


class TemplateConfig(Schema):
    """One step template → one approved WhatsApp template."""

    name = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[a-z0-9_]{1,512}$",
            error="the template's name at Meta: lower-case letters, digits and underscores",
        ),
    )
    language = fields.String(
        load_default=None,
        validate=validate.Regexp(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$", error="e.g. de, en_US, pt_BR"),
    )
    languages = fields.List(
        fields.String(validate=validate.Regexp(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")),
        load_default=list,
    )
    body = fields.List(fields.String(validate=_variable), load_default=list)
    button_url_param = fields.String(load_default=None, validate=_variable)
    defaults = fields.Dict(
        keys=fields.String(validate=_variable), values=fields.String(), load_default=dict
    )


class TemplatesField(fields.Field):
    """``{step template: TemplateConfig}`` with errors keyed ``templates.<step>.<key>``.

    (``fields.Dict(values=Nested(...))`` would report ``templates.<step>.value.<key>``.)
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict:
        if not isinstance(value, dict):
            raise ValidationError("expected a table of step templates")
        loaded, errors = {}, {}
        for step, table in value.items():
            if not STEP_TEMPLATE.match(str(step)):
                errors[step] = ["step template names use letters, digits, - and _"]
                continue
            try:
                loaded[step] = TemplateConfig().load(table)
            except ValidationError as exc:
                errors[step] = exc.messages
        if errors:
            raise ValidationError(errors)
        return loaded


class WhatsAppConfig(Schema):
    phone_number_id = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^\d{5,20}$", error="the phone number ID from Meta's API Setup page, not the number"
        ),
    )
    access_token = fields.String(
        required=True, validate=validate.Length(min=10), metadata={"secret": True}
    )
    api_base = fields.String(load_default=DEFAULT_API_BASE)
    app_secret = fields.String(load_default=None, metadata={"secret": True})
    verify_token = fields.String(load_default=None, metadata={"secret": True})
    templates = TemplatesField(
        required=True,
        validate=validate.Length(min=1, error="map at least one step template"),
    )
    connect_timeout = fields.Float(load_default=5.0, validate=validate.Range(min=0.1, max=60))
    read_timeout = fields.Float(load_default=20.0, validate=validate.Range(min=0.1, max=120))

    @validates("api_base")
    def _api_base(self, value: str, **_: Any) -> None:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query:
            raise ValidationError("e.g. https://graph.facebook.com/v26.0")

    @post_load
    def _strip_slash(self, data: dict, **_: Any) -> dict:
        data["api_base"] = data["api_base"].rstrip("/")
        return data
