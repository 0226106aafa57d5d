"""Tenants: one TOML file per client shop under ``<config dir>/tenants/<slug>.toml``.

Every file is read at start-up (and again when it changes, see :mod:`hub.catalog`),
``${VAR}`` (or ``${VAR:-default}``) is expanded from the environment, the core keys are validated
by :class:`TenantSchema` and each enabled plugin's table by that plugin's own schema; every step's
template must exist for each of its channels. Every mistake becomes one :class:`ConfigIssue`
naming the file and the key path: an unset variable is reported once and hides the errors its
empty value causes, and a misspelt key says which key it probably meant. A tenant with issues is
not served (the others are), and ``hub config check`` prints them all and exits non-zero.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.numbers import is_currency
from marshmallow import (
    INCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from hub.conditions import Condition, ConditionError, compile_condition
from hub.durations import format_duration, parse_duration
from hub.holdout import parse_share
from hub.spelling import closest, did_you_mean

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
EU_COUNTRIES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
    ]
)
CONSENT_POLICIES = ("opt_in", "not_opted_out")
# keys the core reads from a [sources.*] table itself; the plugin's schema never sees them
CORE_SOURCE_KEYS = ("abandon_after",)
MIN_RETENTION = timedelta(days=1)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class ConfigIssue:
    """One configuration mistake, printed as ``file: key: message``."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}: {self.key}: {self.message}"
            if self.key
            else f"{self.file}: {self.message}"
        )


class TemplateLookup(Protocol):
    """What loading needs of :class:`hub.templates.Renderer`: which template files exist."""

    def locales(self, tenant: str, name: str, channel: str) -> set[str]: ...

    def names(self, tenant: str, channel: str) -> set[str]: ...


class ConfigError(Exception):
    """Raised where a single bad configuration must stop a command; carries the issues."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues


@dataclass(frozen=True)
class Step:
    index: int
    after: timedelta
    channels: tuple[str, ...]
    template: str
    offer: Mapping[str, Any] | None
    when: Condition | None

    def offer_expires_at(self, abandoned_at: datetime | None) -> datetime | None:
        """When the step's offer dies: its ``expires_at``, or ``valid_for`` after the
        abandonment (so every step of a flow tells the customer the same deadline)."""
        offer = self.offer or {}
        if offer.get("expires_at") is not None:
            return offer["expires_at"]
        if offer.get("valid_for") is not None and abandoned_at is not None:
            return abandoned_at + offer["valid_for"]
        return None


@dataclass(frozen=True)
class Flow:
    name: str
    when: Condition | None
    steps: tuple[Step, ...]
    enabled: bool = True
    # the share of journeys that get no message (hub.holdout), 0.0 to 0.5
    holdout: float = 0.0


@dataclass(frozen=True)
class ProbeSettings:
    """``[probe]``: ask the source's platform whether the checkout converted before a step
    fires (where the source has a probe and its table the credentials), and how long to wait."""

    enabled: bool = True
    timeout: timedelta = timedelta(seconds=2)


@dataclass(frozen=True)
class LinkSettings:
    """``[links]``: no message goes out whose recovery URL or offer dies within ``margin``;
    an expired ``/r/`` link sends the customer to ``fallback_url`` (the shop) when set."""

    margin: timedelta = timedelta(hours=1)
    fallback_url: str | None = None


@dataclass(frozen=True)
class Tenant:
    """A loaded tenant: core settings plus each enabled plugin's loaded config."""

    slug: str
    name: str
    path: str
    timezone: ZoneInfo
    locale: str
    staff_locale: str
    currency: str
    quiet_hours: tuple[time, time] | None
    frequency_cap: tuple[int, timedelta]
    attribution_window: timedelta
    consent: Mapping[str, str]
    opt_in_countries: frozenset[str]
    support: str | None
    sources: Mapping[str, Mapping[str, Any]]
    abandon_after: Mapping[str, timedelta]
    sinks: Mapping[str, Mapping[str, Any]]
    flows: tuple[Flow, ...]
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)
    # HTML e-mails carry an open pixel (an estimate: see the README's results section)
    track_opens: bool = True
    retention: timedelta | None = None
    probe: ProbeSettings = ProbeSettings()
    links: LinkSettings = LinkSettings()

    def consent_policy(self, channel: str, country: str | None) -> str:
        """What ``unknown`` consent allows on ``channel`` for a customer from ``country``."""
        if country and country in self.opt_in_countries:
            return "opt_in"
        return self.consent.get(channel, "opt_in")


class DurationField(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):  # noqa: ANN001
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class ClockField(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):  # noqa: ANN001
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return time.fromisoformat(text)
        except ValueError:
            raise ValidationError(f'expected a time like "21:00", got {text!r}') from None


class FrequencyCapSchema(Schema):
    class Meta:
        unknown = RAISE

    max = fields.Integer(required=True, validate=validate.Range(min=1))
    per = DurationField(required=True)


class ConsentSchema(Schema):
    """``[consent]``: ``opt_in_countries`` plus one policy per channel kind. Which channels
    exist is up to the installed sinks, so the keys are checked against them later."""

    class Meta:
        unknown = INCLUDE

    opt_in_countries = fields.List(fields.String(), load_default=list)


class OfferSchema(Schema):
    """A step's offer. It dies at ``expires_at`` or ``valid_for`` after the abandonment
    (never both): a step whose offer dies within ``[links] margin`` is not sent."""

    class Meta:
        unknown = RAISE

    promo_code = fields.String()
    text = fields.String()
    discount = fields.String()
    expires_at = fields.AwareDateTime(format="iso", default_timezone=None)
    valid_for = DurationField()

    @validates_schema
    def _one_expiry(self, data: dict, **_: Any) -> None:
        if "expires_at" in data and "valid_for" in data:
            raise ValidationError("give expires_at or valid_for, not both", "valid_for")


class ProbeSchema(Schema):
    class Meta:
        unknown = RAISE

    enabled = fields.Boolean(load_default=True)
    timeout = DurationField(load_default=timedelta(seconds=2))

    @validates_schema
    def _short(self, data: dict, **_: Any) -> None:
        if not timedelta(seconds=1) <= data["timeout"] <= timedelta(seconds=30):
            raise ValidationError("must be between 1s and 30s: a step waits for it", "timeout")


class LinksSchema(Schema):
    class Meta:
        unknown = RAISE

    margin = DurationField(load_default=timedelta(hours=1))
    fallback_url = fields.Url(load_default=None, schemes={"http", "https"}, require_tld=False)


class StepSchema(Schema):
    class Meta:
        unknown = RAISE

    after = DurationField(required=True)
    channels = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    template = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_-]+$"))
    offer = fields.Nested(OfferSchema, load_default=None)
    when = fields.Raw(load_default=None)


class FlowSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True)
    enabled = fields.Boolean(load_default=True)
    when = fields.Raw(load_default=None)
    holdout = fields.Raw(load_default=None)  # "10%"; checked by hub.holdout.parse_share
    steps = fields.List(fields.Nested(StepSchema), required=True, validate=validate.Length(min=1))


class TenantSchema(Schema):
    """The core keys of a tenant file (contract: keys may be added, never renamed)."""

    class Meta:
        unknown = RAISE

    slug = fields.String()
    name = fields.String(required=True)
    timezone = fields.String(load_default="UTC")
    locale = fields.String(load_default="en")
    staff_locale = fields.String(load_default=None)
    currency = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{3}$"))
    quiet_hours = fields.List(ClockField(), validate=validate.Length(equal=2), load_default=None)
    frequency_cap = fields.Nested(FrequencyCapSchema, load_default=None)
    attribution_window = DurationField(load_default=timedelta(days=7))
    # how long raw payloads and personal data of closed journeys stay (hub.erasure); None: kept
    retention = DurationField(load_default=None)
    support = fields.String(load_default=None)
    track_opens = fields.Boolean(load_default=True)
    consent = fields.Nested(ConsentSchema, load_default=dict)
    sources = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict)
    sinks = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict)
    flows = fields.List(fields.Nested(FlowSchema), load_default=list)
    probe = fields.Nested(ProbeSchema, load_default=lambda: ProbeSchema().load({}))
    links = fields.Nested(LinksSchema, load_default=lambda: LinksSchema().load({}))


def expand_env(value: Any, environ: Mapping[str, str], path: str, issues: list[str]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; collect unset variables."""
    if isinstance(value, str):

        def substitute(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            issues.append((path, f"environment variable {name} is not set"))
            return ""

        return _VAR.sub(substitute, value)
    if isinstance(value, dict):
        return {
            k: expand_env(v, environ, f"{path}.{k}" if path else k, issues)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand_env(v, environ, f"{path}[{i}]", issues) for i, v in enumerate(value)]
    return value


def _walk_errors(messages: Any, prefix: str, schema: Schema | None) -> list[tuple[str, str]]:
    """marshmallow's error tree as ``(key path, message)`` pairs.

    ``schema`` is the schema the errors came from: an unknown key close to one of its field
    names gets "did you mean", and the "Missing data for required field." of the field it
    probably meant is dropped (one typo, one error).
    """
    out: list[tuple[str, str]] = []
    if isinstance(messages, dict):
        names = _field_names(schema)
        meant = {
            key: closest(key, names)
            for key, value in messages.items()
            if isinstance(key, str) and value == [UNKNOWN]
        }
        for key, value in messages.items():
            if isinstance(key, int):
                out.extend(_walk_errors(value, f"{prefix}[{key}]", schema))
                continue
            sub = prefix if key == "_schema" else f"{prefix}.{key}" if prefix else str(key)
            if meant.get(key):
                out.append((sub, f"Unknown field; did you mean '{meant[key]}'?"))
            elif value == [MISSING] and key in meant.values():
                continue
            else:
                out.extend(_walk_errors(value, sub, _nested(names.get(key), schema, key)))
    elif isinstance(messages, list):
        if all(isinstance(m, str) for m in messages):
            out.extend((prefix, m) for m in messages)
        else:
            for m in messages:
                out.extend(_walk_errors(m, prefix, schema))
    else:
        out.append((prefix, str(messages)))
    return out


UNKNOWN = "Unknown field."
MISSING = "Missing data for required field."


def _field_names(schema: Schema | None) -> dict[str, fields.Field]:
    """The keys a schema accepts (``data_key`` where a field has one: ``from``)."""
    if schema is None:
        return {}
    return {f.data_key or name: f for name, f in schema.fields.items() if not f.dump_only}


def _nested(field_: fields.Field | None, schema: Schema | None, key: str) -> Schema | None:
    """The schema errors below ``key`` come from: a Nested field's, a list of Nested's."""
    if key == "_schema":
        return schema
    if isinstance(field_, fields.List):
        field_ = field_.inner
    if isinstance(field_, fields.Nested) and isinstance(field_.schema, Schema):
        return field_.schema
    return None


def load_tenants(
    config_dir: str | Path,
    sources: Mapping[str, Any],
    sinks: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    templates: TemplateLookup,
) -> tuple[dict[str, Tenant], list[ConfigIssue]]:
    """Load every ``tenants/*.toml``; returns the valid tenants and all issues found."""
    tenants: dict[str, Tenant] = {}
    issues: list[ConfigIssue] = []
    tenant_dir = Path(config_dir) / "tenants"
    if not tenant_dir.is_dir():
        return tenants, [ConfigIssue(str(tenant_dir), "", "no such directory")]
    for path in sorted(tenant_dir.glob("*.toml")):
        tenant, file_issues = load_tenant_file(path, sources, sinks, environ, templates=templates)
        issues.extend(file_issues)
        if tenant is not None and not file_issues:
            tenants[tenant.slug] = tenant
    return tenants, issues


def load_tenant_file(
    path: Path,
    sources: Mapping[str, Any],
    sinks: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    templates: TemplateLookup,
    text: str | None = None,
) -> tuple[Tenant | None, list[ConfigIssue]]:
    """Load one tenant file (``text``: its content, when the caller has read it already).

    The tenant is ``None`` when the file cannot be read or its core keys do not validate; it
    is only usable when the issues are empty.
    """
    file = str(path)
    slug = path.stem
    if not SLUG.match(slug):
        return None, [
            ConfigIssue(
                file,
                "",
                f"file name {slug!r} is not a valid tenant slug "
                "(lower-case letters, digits, - and _)",
            )
        ]
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8") if text is None else text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return None, [ConfigIssue(file, "", f"cannot read: {exc}")]

    env_issues: list[tuple[str, str]] = []
    data = expand_env(raw, environ, "", env_issues)
    issues = [ConfigIssue(file, key, msg) for key, msg in env_issues]
    tenant = _validate(file, slug, raw, data, sources, sinks, templates, issues)
    return tenant, _without_follow_ons(issues, [key for key, _msg in env_issues])


def _without_follow_ons(issues: list[ConfigIssue], env_keys: list[str]) -> list[ConfigIssue]:
    """Drop repeats, and the errors an unset variable's empty value causes at its key, below
    it or on the tables holding it (a plugin's cross-field check): the unset variable is the
    one thing to fix, and those errors come back by themselves if they were real."""
    unset = set(env_keys)
    kept: list[ConfigIssue] = []
    for issue in dict.fromkeys(issues):
        derived = any(
            issue.key == k
            or issue.key.startswith((f"{k}.", f"{k}["))
            or (issue.key and k.startswith((f"{issue.key}.", f"{issue.key}[")))
            for k in unset
        )
        if issue.message.startswith("environment variable ") or not derived:
            kept.append(issue)
    return kept


def _validate(
    file: str,
    slug: str,
    raw: Mapping[str, Any],
    data: Mapping[str, Any],
    sources: Mapping[str, Any],
    sinks: Mapping[str, Any],
    templates: TemplateLookup,
    issues: list[ConfigIssue],
) -> Tenant | None:
    """Validate the expanded ``data`` of one file, appending to ``issues``; the tenant is
    ``None`` when the core keys do not validate."""
    schema = TenantSchema()
    try:
        core = schema.load(data)
    except ValidationError as exc:
        issues.extend(ConfigIssue(file, k, m) for k, m in _walk_errors(exc.messages, "", schema))
        return None

    if core.get("slug") not in (None, slug):
        issues.append(ConfigIssue(file, "slug", f"{core['slug']!r} does not match the file name"))
    try:
        tz = ZoneInfo(core["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        issues.append(ConfigIssue(file, "timezone", f"unknown time zone {core['timezone']!r}"))
        tz = ZoneInfo("UTC")
    try:
        Locale.parse(core["locale"].replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        issues.append(ConfigIssue(file, "locale", f"unknown locale {core['locale']!r}"))
    if not is_currency(core["currency"]):
        issues.append(ConfigIssue(file, "currency", f"unknown currency {core['currency']!r}"))

    source_configs, abandon_after = {}, {}
    for name, table in core["sources"].items():
        key = f"sources.{name}"
        if name not in sources:
            issues.append(
                ConfigIssue(
                    file,
                    key,
                    f'no source plugin named "{name}" is installed{did_you_mean(name, sources)} '
                    f"(installed: {', '.join(sorted(sources)) or 'none'})",
                )
            )
            continue
        table = dict(table)
        source = sources[name]
        after_text = table.pop("abandon_after", None)
        if after_text is not None or source.infers_abandonment:
            try:
                abandon_after[name] = parse_duration(after_text or source.default_abandon_after)
            except ValueError as exc:
                issues.append(ConfigIssue(file, f"{key}.abandon_after", str(exc)))
        source_configs[name] = _load_plugin_table(source, table, file, key, issues)

    sink_configs = {}
    for name, table in core["sinks"].items():
        key = f"sinks.{name}"
        if name not in sinks:
            issues.append(
                ConfigIssue(
                    file,
                    key,
                    f'no sink plugin named "{name}" is installed{did_you_mean(name, sinks)} '
                    f"(installed: {', '.join(sorted(sinks)) or 'none'})",
                )
            )
            continue
        sink_configs[name] = _load_plugin_table(sinks[name], dict(table), file, key, issues)

    channels = sorted({sink.channel for sink in sinks.values()})
    consent = _consent_policies(core["consent"], channels, file, issues)
    # consent_<channel> conditions for the channels whose sinks ask for consent
    asking = sorted({sink.channel for sink in sinks.values() if sink.needs_consent})

    def condition(when: Any, key: str) -> Condition | None:
        return _compile(when, core["currency"], key, file, issues, sources, asking)

    flows = []
    for fi, flow in enumerate(core["flows"]):
        fkey = f"flows[{fi}]"
        flow_when = condition(flow["when"], f"{fkey}.when")
        steps = []
        for si, step in enumerate(flow["steps"]):
            skey = f"{fkey}.steps[{si}]"
            for ci, channel in enumerate(step["channels"]):
                if channel not in core["sinks"]:
                    issues.append(
                        ConfigIssue(
                            file,
                            f"{skey}.channels[{ci}]",
                            f'"{channel}" is not a [sinks.*] table of this tenant'
                            + did_you_mean(channel, core["sinks"]),
                        )
                    )
                elif channel in sinks:
                    issues.extend(
                        _template_issue(
                            templates, slug, step["template"], sinks[channel], file, skey
                        )
                    )
            steps.append(
                Step(
                    index=si,
                    after=step["after"],
                    channels=tuple(step["channels"]),
                    template=step["template"],
                    offer=step["offer"],
                    when=condition(step["when"], f"{skey}.when"),
                )
            )
        holdout = _holdout_share(flow["holdout"], f"{fkey}.holdout", file, issues)
        flows.append(Flow(flow["name"], flow_when, tuple(steps), flow["enabled"], holdout))

    countries: set[str] = set()
    for i, c in enumerate(core["consent"].get("opt_in_countries", [])):
        if c == "EU":
            countries |= EU_COUNTRIES
        elif re.fullmatch(r"[A-Z]{2}", c):
            countries.add(c)
        else:
            issues.append(
                ConfigIssue(
                    file,
                    f"consent.opt_in_countries[{i}]",
                    f'{c!r} is neither "EU" nor an ISO country code',
                )
            )

    retention, least = core["retention"], max(MIN_RETENTION, core["attribution_window"])
    if retention is not None and retention < least:
        # conversions find their journeys by e-mail and phone within attribution_window
        message = f"must be at least {format_duration(least)} (1d, and attribution_window)"
        issues.append(ConfigIssue(file, "retention", message))
    cap = core["frequency_cap"]
    tenant = Tenant(
        slug=slug,
        name=core["name"],
        path=file,
        timezone=tz,
        locale=core["locale"],
        staff_locale=core["staff_locale"] or core["locale"],
        currency=core["currency"],
        quiet_hours=tuple(core["quiet_hours"]) if core["quiet_hours"] else None,
        frequency_cap=(cap["max"], cap["per"]) if cap else (1, timedelta(hours=12)),
        attribution_window=core["attribution_window"],
        consent=consent,
        opt_in_countries=frozenset(countries),
        support=core["support"],
        sources=source_configs,
        abandon_after=abandon_after,
        sinks=sink_configs,
        flows=tuple(flows),
        raw=raw,
        track_opens=core["track_opens"],
        retention=retention,
        probe=ProbeSettings(**core["probe"]),
        links=LinkSettings(**core["links"]),
    )
    return tenant


def _template_issue(
    templates: TemplateLookup, slug: str, name: str, sink: Any, file: str, step_key: str
) -> list[ConfigIssue]:
    """The step's template must have files for this sink's channel in some locale (the
    renderer's own lookup decides); sinks whose text lives at the provider render none."""
    if not getattr(sink, "renders_templates", True) or templates.locales(slug, name, sink.channel):
        return []
    files = f" ({sink.channel}.<locale>.* files)" if sink.channel != sink.name else ""
    hint = did_you_mean(name, templates.names(slug, sink.channel))
    return [
        ConfigIssue(
            file, f"{step_key}.template", f'no "{name}" template for {sink.name}{files}{hint}'
        )
    ]


def _load_plugin_table(
    plugin: Any, table: dict, file: str, key: str, issues: list[ConfigIssue]
) -> dict:
    try:
        schema = plugin.config_schema()
        return schema.load(table)
    except ValidationError as exc:
        issues.extend(ConfigIssue(file, k, m) for k, m in _walk_errors(exc.messages, key, schema))
    except Exception as exc:  # a plugin's schema must not take config loading down
        issues.append(ConfigIssue(file, key, f"plugin schema failed: {exc!r}"))
    return {}


def _holdout_share(value: Any, key: str, file: str, issues: list[ConfigIssue]) -> float:
    """A flow's ``holdout`` as a share (0 when absent); a bad one is an issue at ``key``."""
    if value is None:
        return 0.0
    try:
        return parse_share(value)
    except ValueError as exc:
        issues.append(ConfigIssue(file, key, str(exc)))
        return 0.0


def _consent_policies(
    table: Mapping[str, Any], channels: list[str], file: str, issues: list[ConfigIssue]
) -> dict[str, str]:
    """``{channel: policy}`` of ``[consent]``; a key no installed sink has as its channel is
    an error (a typo would silently leave the safe default in place)."""
    policies = {}
    for channel, policy in table.items():
        if channel == "opt_in_countries":
            continue
        key = f"consent.{channel}"
        if channel not in channels:
            issues.append(
                ConfigIssue(
                    file,
                    key,
                    f'no installed sink has the channel "{channel}"'
                    f"{did_you_mean(str(channel), channels)} "
                    f"(channels: {', '.join(channels) or 'none'})",
                )
            )
        elif policy not in CONSENT_POLICIES:
            issues.append(ConfigIssue(file, key, f"Must be one of: {', '.join(CONSENT_POLICIES)}."))
        else:
            policies[channel] = policy
    return policies


def _compile(
    when: Any,
    currency: str,
    key: str,
    file: str,
    issues: list[ConfigIssue],
    sources: Mapping[str, Any],
    channels: list[str],
) -> Condition | None:
    if when is None:
        return None
    try:
        return compile_condition(when, currency, key, sources=tuple(sources), channels=channels)
    except ConditionError as exc:
        issues.append(ConfigIssue(file, exc.key, exc.message))
        return None


def with_proposed_flows(
    tenant: Tenant,
    path: Path,
    sources: Mapping[str, Any],
    sinks: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    templates: TemplateLookup,
) -> tuple[Tenant | None, list[ConfigIssue]]:
    """``tenant`` with the ``[[flows]]`` of the file at ``path`` in place of its own, checked
    exactly as a tenant file's flows are (``hub replay --flow``): a proposal is judged by the
    same rules it would meet once pasted into the tenant file, and its mistakes name its file.
    """
    file = str(path)
    try:
        proposed = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return None, [ConfigIssue(file, "", f"cannot read: {exc}")]
    others = sorted(set(proposed) - {"flows"})
    if others or not proposed.get("flows"):
        message = f"unexpected key {others[0]!r}: " if others else ""
        return None, [
            ConfigIssue(
                file,
                others[0] if others else "",
                f"{message}a flow file holds [[flows]] tables and nothing else",
            )
        ]
    raw = {**tenant.raw, "flows": proposed["flows"]}
    env_issues: list[tuple[str, str]] = []
    data = expand_env(raw, environ, "", env_issues)
    issues = [ConfigIssue(file, key, msg) for key, msg in env_issues]
    loaded = _validate(file, tenant.slug, raw, data, sources, sinks, templates, issues)
    issues = _without_follow_ons(issues, [key for key, _msg in env_issues])
    if loaded is None or issues:
        return None, issues
    return replace(loaded, path=tenant.path), []
