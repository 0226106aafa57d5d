"""The application factory and the :class:`Hub` it builds.

``create_app(config)`` builds everything from an explicit mapping plus the documented
environment variables; nothing is global, so tests build as many apps as they like. The same
:class:`Hub` serves the web process (ingress) and the workers (``hub worker`` runs inside the
app context, and jobs reach the hub through ``current_app``).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException

from hub import metrics
from hub.catalog import TenantCatalog
from hub.lastgood import LastGood
from hub.logs import configure_logging
from hub.plugins import Registry, load_plugins
from hub.queues import EmbeddedRedis, Queues, queue_prefix_problem
from hub.services import error_response
from hub.store import Store
from hub.templates import Renderer
from hub.tenants import ConfigIssue, Tenant

log = logging.getLogger("hub")

# documented environment variables -> config keys (README "Environment")
ENV_KEYS = (
    "HUB_CONFIG_DIR",
    "HUB_VAR_DIR",
    "DATABASE_URL",
    "DATABASE_SCHEMA",
    "REDIS_URL",
    "HUB_QUEUE_PREFIX",
    "HUB_SECRET_KEY",
    "HUB_SECRET_KEY_FALLBACKS",
    "HUB_PUBLIC_URL",
    "HUB_ALLOW_PRIVATE_NETWORKS",
    "HUB_CA_BUNDLE",
    "HUB_MAX_BODY_BYTES",
    "HUB_RETRY_BASE",
    "HUB_RETRY_MAX",
    "HUB_SWEEP_AFTER",
    "HUB_LOG_LEVEL",
    "HUB_LOG_FORMAT",
    "HUB_METRICS_TOKEN",
    "HUB_AUTO_MIGRATE",
    "HUB_ADMIN_TOKEN",
    "HUB_API_AUTH_LIMIT",
    "HUB_TRUSTED_PROXIES",
)
DEFAULTS: dict[str, Any] = {
    "HUB_CONFIG_DIR": "config",
    "HUB_VAR_DIR": "var",
    "HUB_QUEUE_PREFIX": "",
    "HUB_MAX_BODY_BYTES": 1024 * 1024,
    "HUB_RETRY_BASE": 30.0,  # first retry after ~30 s, then doubling, ±20 % jitter
    "HUB_RETRY_MAX": 3600.0,  # no retry waits longer than this, whatever Retry-After says
    "HUB_SWEEP_AFTER": 60.0,  # an event not processed after this long is enqueued again
    "HUB_ALLOW_PRIVATE_NETWORKS": "",
    "HUB_LOG_LEVEL": "INFO",
    "HUB_LOG_FORMAT": "human",
    "HUB_AUTO_MIGRATE": "1",
    "HUB_API_AUTH_LIMIT": "10 per minute",
    "HUB_TRUSTED_PROXIES": 0,
}


@dataclass
class Settings:
    """Resolved settings; paths absolute so worker processes agree with the web process."""

    config_dir: Path
    var_dir: Path
    database_url: str
    database_schema: str | None
    redis_url: str | None
    queue_prefix: str
    secret_key: str
    public_url: str | None
    allow_private_networks: tuple[str, ...]
    ca_bundle: str | None  # PEM of CAs trusted in addition to the default store (all outbound TLS)
    max_body_bytes: int
    retry_base: float
    retry_max: float
    sweep_after: float
    log_level: str = "INFO"
    log_format: str = "human"  # or "json": one object per line
    metrics_token: str | None = None  # GET /metrics wants "Authorization: Bearer <token>"
    # earlier HUB_SECRET_KEYs, still accepted on links already sent (rotation)
    secret_key_fallbacks: tuple[str, ...] = ()
    auto_migrate: bool = True  # HUB_AUTO_MIGRATE=0: start-up refuses a database behind
    # an agency admin bearer token for the REST API without a key in the database (bootstrap)
    admin_token: str | None = None
    api_auth_limit: str = "10 per minute"  # failed API authentications per client address
    trusted_proxies: int = 0  # HUB_TRUSTED_PROXIES: proxies whose X-Forwarded-* are believed

    @property
    def link_keys(self) -> list[str]:
        """The keys a link token may be signed with, for itsdangerous: it signs with the last
        (the current key) and tries them all, newest first, when verifying."""
        return [*reversed(self.secret_key_fallbacks), self.secret_key]

    def problems(self) -> list[str]:
        """Settings the hub cannot run with, one line each (``hub config check`` lists them)."""
        from limits import parse

        found = [queue_prefix_problem(self.queue_prefix)]
        try:
            parse(self.api_auth_limit)
        except ValueError:
            found.append(
                f"HUB_API_AUTH_LIMIT={self.api_auth_limit!r} is invalid: use e.g. '10 per minute'"
            )
        return [problem for problem in found if problem]

    @classmethod
    def resolve(
        cls,
        config: Mapping[str, Any] | None,
        environ: Mapping[str, str],
        *,
        create_state: bool = True,
    ) -> Settings:
        """``create_state=False`` writes nothing (no ``var/``, no generated secret)."""
        values: dict[str, Any] = dict(DEFAULTS)
        values.update({k: environ[k] for k in ENV_KEYS if environ.get(k)})
        values.update(config or {})
        var_dir = Path(values["HUB_VAR_DIR"]).resolve()
        db_url = values.get("DATABASE_URL") or f"sqlite:///{var_dir / 'hub.db'}"
        return cls(
            config_dir=Path(values["HUB_CONFIG_DIR"]).resolve(),
            var_dir=var_dir,
            database_url=db_url,
            database_schema=values.get("DATABASE_SCHEMA") or None,
            redis_url=values.get("REDIS_URL") or None,
            queue_prefix=values["HUB_QUEUE_PREFIX"],
            secret_key=values.get("HUB_SECRET_KEY") or _dev_secret(var_dir, create_state),
            public_url=(values.get("HUB_PUBLIC_URL") or "").rstrip("/") or None,
            allow_private_networks=tuple(
                c.strip() for c in str(values["HUB_ALLOW_PRIVATE_NETWORKS"]).split(",") if c.strip()
            ),
            ca_bundle=_ca_bundle(values.get("HUB_CA_BUNDLE")),
            max_body_bytes=int(_number(values, "HUB_MAX_BODY_BYTES")),
            retry_base=_number(values, "HUB_RETRY_BASE"),
            retry_max=_number(values, "HUB_RETRY_MAX"),
            sweep_after=_number(values, "HUB_SWEEP_AFTER"),
            secret_key_fallbacks=tuple(
                k.strip()
                for k in str(values.get("HUB_SECRET_KEY_FALLBACKS") or "").split(",")
                if k.strip()
            ),
            log_level=str(values["HUB_LOG_LEVEL"]).upper(),
            log_format=str(values["HUB_LOG_FORMAT"]).lower(),
            metrics_token=values.get("HUB_METRICS_TOKEN") or None,
            auto_migrate=str(values["HUB_AUTO_MIGRATE"]).strip().lower()
            not in ("0", "false", "no", "off"),
            admin_token=values.get("HUB_ADMIN_TOKEN") or None,
            api_auth_limit=str(values["HUB_API_AUTH_LIMIT"]),
            trusted_proxies=int(_number(values, "HUB_TRUSTED_PROXIES")),
        )


def _number(values: Mapping[str, Any], key: str) -> float:
    """A numeric setting; a typo names the variable instead of ``invalid literal for int()``."""
    try:
        return float(values[key])
    except (TypeError, ValueError):
        raise ValueError(f"{key}={values[key]!r}: expected a number") from None


def _ca_bundle(value: str | None) -> str | None:
    """An operator mistake here would fail every TLS call later: refuse to start instead."""
    if not value:
        return None
    import ssl

    path = Path(value).resolve()
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"HUB_CA_BUNDLE: cannot load CA certificates from {path}: {exc}") from None
    return str(path)


def _dev_secret(var_dir: Path, create: bool = True) -> str:
    """Without HUB_SECRET_KEY, keep one random key in var/ so links survive restarts.

    A process that must not create state (``hub log``, ``hub flow preview`` in a fresh
    directory) gets a throw-away key: it signs no link that leaves the machine.
    """
    path = var_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        if not create:
            return secrets.token_urlsafe(32)
        var_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        path.write_text(key)
        path.chmod(0o600)
        log.warning("HUB_SECRET_KEY is not set: generated one in %s (set it in production)", path)
        return key


class SettingsError(ValueError):
    """A setting the hub cannot run with; the message is one line naming the variable."""


class Hub:
    """Everything one process of the hub needs, built once per app."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        environ: Mapping[str, str],
        store: Store,
        *,
        create_state: bool = True,
    ) -> None:
        """``create_state=False``: read the tenants' shared last good copies, write none."""
        self.settings = settings
        self.registry = registry
        self.settings_problems = settings.problems()
        self.renderer = Renderer(settings.config_dir, registry)
        self.catalog = TenantCatalog(
            settings.config_dir,
            registry.sources,
            registry.sinks,
            environ,
            self.renderer,
            last_good=LastGood(settings.var_dir / "tenants-last-good", writable=create_state),
        )
        self.store = store
        self.embedded_redis: EmbeddedRedis | None = None
        self.redis_url = settings.redis_url or EmbeddedRedis(settings.var_dir).url
        # where the engine counts deliveries (a module: prometheus-client's values are per process)
        self.metrics = metrics
        for services in registry.services.values():
            services.attach(self)

    @cached_property
    def installation(self) -> str:
        """This database's installation id, which every job and link names (:mod:`hub.binding`).

        Read once per process: ``create_app`` reads it at start-up when it may create state;
        a reading command (``hub log``) that never needs it never opens the database for it.
        """
        return self.store.installation_id()

    @cached_property
    def queues(self) -> Queues:
        """The RQ queues, namespaced by the installation (built on first use, then kept)."""
        return Queues(self.redis_url, self.settings.queue_prefix, self.installation)

    @property
    def tenants(self) -> dict[str, Tenant]:
        """The tenants served now. Asking is what keeps them current: their files are
        re-read when changed, at most once a second (see :mod:`hub.catalog`)."""
        return self.catalog.current()

    @property
    def config_issues(self) -> list[ConfigIssue]:
        """Every error of the tenant files as they are now (``hub config check``)."""
        return self.catalog.issues()

    @property
    def sources(self):  # noqa: ANN201
        return self.registry.sources

    @property
    def sinks(self):  # noqa: ANN201
        return self.registry.sinks

    @property
    def probes(self):  # noqa: ANN201
        """Source name → its :class:`hub.ConversionProbe` (sources whose platform can be asked)."""
        return self.registry.probes

    def ensure_redis(self) -> None:
        """Start the embedded Redis when ``REDIS_URL`` is unset (``hub run``/``hub worker``)."""
        if self.settings.redis_url is None and self.embedded_redis is None:
            self.embedded_redis = EmbeddedRedis(self.settings.var_dir)
            self.embedded_redis.start()

    def redis_unset_reason(self) -> str | None:
        """Why there may be no Redis when ``REDIS_URL`` is unset (``/readyz``, CLI errors):
        only ``hub run``/``hub worker`` start the embedded one; everything else attaches."""
        if self.settings.redis_url is not None:
            return None
        return (
            f"REDIS_URL is not set and no embedded Redis runs at {self.redis_url}; set "
            "REDIS_URL (production) or start `hub run` / `hub worker` with the same HUB_VAR_DIR"
        )

    def public_url(self, port: int = 8000) -> str:
        return self.settings.public_url or f"http://127.0.0.1:{port}"

    def close(self) -> None:
        if self.embedded_redis:
            self.embedded_redis.stop()
            self.embedded_redis = None
        self.store.dispose()


def _known_secrets(settings: Settings) -> list[str]:
    """Secret values of the settings, masked literally wherever a log line shows them."""
    keys = (
        settings.secret_key,
        settings.metrics_token,
        settings.admin_token,
        *settings.secret_key_fallbacks,
    )
    return [key for key in keys if key]


def _tenant_secrets(tenants: Mapping[str, Tenant]) -> list[str]:
    """The tenants' secret-named plugin settings (webhook secrets, API keys, passwords)."""
    from hub.logs import secret_values

    found: list[str] = []
    for tenant in tenants.values():
        for table in (*tenant.sources.values(), *tenant.sinks.values()):
            found.extend(secret_values(table))
    return found


def _prepare_database(hub: Hub) -> None:
    """Bring the schema to this code's revision before serving (default), or, with
    ``HUB_AUTO_MIGRATE=0``, refuse to start on a database that is behind. Either way a
    database from a newer release is refused (:class:`hub.migrations.SchemaMismatch`)."""
    from hub import migrations

    try:
        if hub.settings.auto_migrate:
            done = migrations.upgrade(hub.store)
            if done.before.current != done.after:
                log.info("%s", done.describe())
        else:
            migrations.require_current(hub.store)
    except BaseException:
        hub.store.dispose()
        raise


def create_app(
    config: Mapping[str, Any] | None = None,
    *,
    plugins: Any = None,
    extra_plugins: tuple = (),
    create_state: bool = True,
    strict: bool = True,
) -> Flask:
    """Build the Flask app: settings, plugins, tenants, store, queues, blueprints, CLI.

    ``config`` overrides the environment (tests pass everything explicitly). ``plugins``
    replaces entry-point discovery with the given entry points; ``extra_plugins`` registers
    plugin objects in addition (the hub's own tests use both). ``create_state=False`` is for
    commands that only read (``hub log``, ``hub --help``): no ``var/``, no secret file, no
    tables, so running one in the wrong directory leaves nothing behind.
    A setting the hub cannot run with raises :class:`SettingsError`; the ``hub`` command
    passes ``strict=False`` so that ``hub config check`` can list it and ``hub run``/``hub
    worker`` refuse with one line.
    """
    from dotenv import load_dotenv

    load_dotenv(override=False)
    settings = Settings.resolve(config, os.environ, create_state=create_state)
    if strict and settings.problems():
        raise SettingsError(settings.problems()[0])
    configure_logging(settings.log_level, settings.log_format, _known_secrets(settings))
    registry = load_plugins(plugins, extra_plugins)

    app = Flask("hub")
    # the ingress applies HUB_MAX_BODY_BYTES itself; plugin routes get a larger cap because
    # providers' status callbacks batch (Meta's may reach 3 MB)
    app.config["MAX_CONTENT_LENGTH"] = max(settings.max_body_bytes, 4 * 1024 * 1024)
    # url-encoded forms are not capped by field count otherwise
    app.config["MAX_FORM_PARTS"] = 1000
    app.config["SECRET_KEY"] = settings.secret_key
    app.config["SECRET_KEY_FALLBACKS"] = list(settings.secret_key_fallbacks)
    store = Store(settings.database_url, settings.database_schema)
    # loading the tenants logs one line per broken tenant; `hub config check` lists the errors
    hub = Hub(settings, registry, os.environ, store, create_state=create_state)
    app.extensions["hub"] = hub
    configure_logging(settings.log_level, settings.log_format, _tenant_secrets(hub.tenants))
    if create_state:
        # a fresh install with HUB_SECRET_KEY set has no var/ yet (the migration makes the
        # SQLite database's folder)
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        _prepare_database(hub)
        hub.queues  # noqa: B018 - reads the installation id once, at start-up

    from hub import api, cli, dashboard, ingress, tracking

    app.register_blueprint(ingress.blueprint)
    api.init_app(app, hub)
    metrics.init_app(app, hub)
    app.register_blueprint(tracking.blueprint)
    for plugin_name, blueprint in registry.blueprints:
        app.register_blueprint(blueprint, url_prefix=f"/plugins/{plugin_name}")
    dashboard.init_app(app, hub)
    cli.register(app)

    @app.errorhandler(HTTPException)
    def _json_error(exc: HTTPException):  # noqa: ANN202
        """Every error a client sees has one JSON shape: code, message, field."""
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or "")

    return app
