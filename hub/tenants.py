"""Tenants: one TOML file per client shop under ``<config dir>/tenants/<slug>.toml``.

Every file is read at start-up, ``${VAR}`` (or ``${VAR:-default}``) is expanded from the
environment, the core keys are validated by :class:`TenantSchema` and each enabled plugin's table
by that plugin's own schema. Every mistake becomes a :class:`ConfigIssue` naming the file and the
key path; a tenant with issues is not served (the others are), and ``hub config check`` prints
them all and exits non-zero.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from hub.conditions import Condition, ConditionError, compile_condition
from hub.durations import parse_duration

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


@dataclass(frozen=True)
class Flow:
    name: str
    when: Condition | None
    steps: tuple[Step, ...]
    enabled: bool = True


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
    class Meta:
        unknown = RAISE

    email = fields.String(validate=validate.OneOf(CONSENT_POLICIES))
    whatsapp = fields.String(validate=validate.OneOf(CONSENT_POLICIES))
    sms = fields.String(validate=validate.OneOf(CONSENT_POLICIES))
    webpush = fields.String(validate=validate.OneOf(CONSENT_POLICIES))
    opt_in_countries = fields.List(fields.String(), load_default=list)


class OfferSchema(Schema):
    class Meta:
        unknown = RAISE

    promo_code = fields.String()
    text = fields.String()
    discount = fields.String()


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
    support = fields.String(load_default=None)
    consent = fields.Nested(ConsentSchema, load_default=dict)
    sources = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict)
    sinks = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict)
    flows = fields.List(fields.Nested(FlowSchema), load_default=list)


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


def _walk_errors(messages: Any, prefix: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            if isinstance(key, int):
                sub = f"{prefix}[{key}]"
            elif key == "_schema":
                sub = prefix
            else:
                sub = f"{prefix}.{key}" if prefix else str(key)
            out.extend(_walk_errors(value, sub))
    elif isinstance(messages, list):
        if all(isinstance(m, str) for m in messages):
            out.extend((prefix, m) for m in messages)
        else:
            for m in messages:
                out.extend(_walk_errors(m, prefix))
    else:
        out.append((prefix, str(messages)))
    return out


def load_tenants(
    config_dir: str | Path,
    sources: Mapping[str, Any],
    sinks: Mapping[str, Any],
    environ: Mapping[str, str],
) -> tuple[dict[str, Tenant], list[ConfigIssue]]:
    """Load every ``tenants/*.toml``; returns the valid tenants and all issues found."""
    tenants: dict[str, Tenant] = {}
    issues: list[ConfigIssue] = []
    tenant_dir = Path(config_dir) / "tenants"
    if not tenant_dir.is_dir():
        return tenants, [ConfigIssue(str(tenant_dir), "", "no such directory")]
    for path in sorted(tenant_dir.glob("*.toml")):
        tenant, file_issues = load_tenant_file(path, sources, sinks, environ)
        issues.extend(file_issues)
        if tenant is not None and not file_issues:
            tenants[tenant.slug] = tenant
    return tenants, issues


def load_tenant_file(
    path: Path, sources: Mapping[str, Any], sinks: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[Tenant | None, list[ConfigIssue]]:
    """Load one tenant file; the tenant is ``None`` only when the file cannot be read at all."""
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
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return None, [ConfigIssue(file, "", f"cannot read: {exc}")]

    env_issues: list[tuple[str, str]] = []
    data = expand_env(raw, environ, "", env_issues)
    issues = [ConfigIssue(file, key, msg) for key, msg in env_issues]

    try:
        core = TenantSchema().load(data)
    except ValidationError as exc:
        issues.extend(ConfigIssue(file, k, m) for k, m in _walk_errors(exc.messages, ""))
        return None, issues

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

    source_configs, abandon_after = {}, {}
    for name, table in core["sources"].items():
        key = f"sources.{name}"
        if name not in sources:
            issues.append(
                ConfigIssue(
                    file,
                    key,
                    f'no source plugin named "{name}" is installed '
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
                    f'no sink plugin named "{name}" is installed '
                    f"(installed: {', '.join(sorted(sinks)) or 'none'})",
                )
            )
            continue
        sink_configs[name] = _load_plugin_table(sinks[name], dict(table), file, key, issues)

    flows = []
    for fi, flow in enumerate(core["flows"]):
        fkey = f"flows[{fi}]"
        flow_when = _compile(flow["when"], core["currency"], f"{fkey}.when", file, issues)
        steps = []
        for si, step in enumerate(flow["steps"]):
            skey = f"{fkey}.steps[{si}]"
            for ci, channel in enumerate(step["channels"]):
                if channel not in core["sinks"]:
                    issues.append(
                        ConfigIssue(
                            file,
                            f"{skey}.channels[{ci}]",
                            f'"{channel}" is not a [sinks.*] table of this tenant',
                        )
                    )
            steps.append(
                Step(
                    index=si,
                    after=step["after"],
                    channels=tuple(step["channels"]),
                    template=step["template"],
                    offer=step["offer"],
                    when=_compile(step["when"], core["currency"], f"{skey}.when", file, issues),
                )
            )
        flows.append(Flow(flow["name"], flow_when, tuple(steps), flow["enabled"]))

    consent = {k: v for k, v in core["consent"].items() if k != "opt_in_countries"}
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
    )
    return tenant, issues


def _load_plugin_table(
    plugin: Any, table: dict, file: str, key: str, issues: list[ConfigIssue]
) -> dict:
    try:
        return plugin.config_schema().load(table)
    except ValidationError as exc:
        issues.extend(ConfigIssue(file, k, m) for k, m in _walk_errors(exc.messages, key))
    except Exception as exc:  # a plugin's schema must not take config loading down
        issues.append(ConfigIssue(file, key, f"plugin schema failed: {exc!r}"))
    return {}


def _compile(
    when: Any, currency: str, key: str, file: str, issues: list[ConfigIssue]
) -> Condition | None:
    if when is None:
        return None
    try:
        return compile_condition(when, currency, key)
    except ConditionError as exc:
        issues.append(ConfigIssue(file, exc.key, exc.message))
        return None
