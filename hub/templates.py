"""Message templates: ``<channel>.<locale>.<ext>`` files rendered by Jinja2 in a sandbox.

A step's ``template`` is looked up as ``templates/<tenant>/<name>/``, then ``templates/<name>/``
under the config dir, then in the template dirs sinks declare, then the hub's defaults. The
language is the first of the customer's locale, its language, the tenant's locale and ``en`` for
which files exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, FileSystemLoader
from jinja2.sandbox import SandboxedEnvironment

DEFAULT_DIR = Path(__file__).parent / "default_templates"


class TemplateMissing(LookupError):
    """No template files for this name, channel and any acceptable locale."""


def message_locales(sink: object, tenant: object, event: dict) -> list[str]:
    """The languages to try for one message: staff read the tenant's ``staff_locale``,
    customers their own locale first."""
    if getattr(sink, "audience", "customer") == "staff":
        return locale_candidates(tenant.staff_locale, tenant.locale)
    return locale_candidates((event.get("customer") or {}).get("locale"), tenant.locale)


def locale_candidates(customer_locale: str | None, tenant_locale: str) -> list[str]:
    """``de-AT`` → ``["de_AT", "de", <tenant>, "en"]`` without repeats."""
    out: list[str] = []
    for loc in (customer_locale, tenant_locale, "en"):
        if not loc:
            continue
        loc = loc.replace("-", "_")
        for candidate in (loc, loc.split("_")[0]):
            if candidate and candidate not in out:
                out.append(candidate)
    return out


class Renderer:
    """Finds and renders templates; one per app, environments cached per directory."""

    def __init__(self, config_dir: Path, registry: Any) -> None:
        self.config_dir = Path(config_dir)
        self.filters = dict(registry.template_filters)
        self.sink_dirs: list[Path] = []
        for sink in registry.sinks.values():
            self.sink_dirs.extend(Path(d) for d in getattr(sink, "template_dirs", ()))
        self._envs: dict[Path, SandboxedEnvironment] = {}

    def _env(self, directory: Path) -> SandboxedEnvironment:
        env = self._envs.get(directory)
        if env is None:
            env = SandboxedEnvironment(
                loader=FileSystemLoader(str(directory)),
                autoescape=lambda name: bool(name) and name.endswith((".html", ".htm")),
                undefined=ChainableUndefined,  # an optional field left out renders empty
                keep_trailing_newline=True,
            )
            env.filters.update(self.filters)
            self._envs[directory] = env
        return env

    def search_dirs(self, tenant: str, name: str) -> list[Path]:
        roots = [
            self.config_dir / "templates" / tenant / name,
            self.config_dir / "templates" / name,
        ]
        roots += [d / name for d in self.sink_dirs]
        roots.append(DEFAULT_DIR / name)
        return [d for d in roots if d.is_dir()]

    def find(
        self, tenant: str, name: str, channel: str, locales: Iterable[str]
    ) -> tuple[Path, str, dict[str, str]]:
        """Return (directory, locale, {ext: file name}) of the best template."""
        dirs = self.search_dirs(tenant, name)
        for locale in locales:
            for directory in dirs:
                prefix = f"{channel}.{locale}."
                files = {p.name[len(prefix) :]: p.name for p in directory.glob(prefix + "*")}
                if files:
                    return directory, locale, files
        raise TemplateMissing(
            f'no "{name}" template for channel {channel} '
            f"(looked in {', '.join(str(d) for d in dirs) or 'nowhere'})"
        )

    def render(
        self,
        tenant: str,
        name: str,
        channel: str,
        locales: Iterable[str],
        context: Mapping[str, Any],
    ) -> tuple[str, dict[str, str]]:
        """Render every file of the template; returns (locale used, {ext: text})."""
        directory, locale, files = self.find(tenant, name, channel, locales)
        env = self._env(directory)
        parts = {
            ext: env.get_template(fname).render(**context, locale=locale)
            for ext, fname in files.items()
        }
        return locale, parts

    def has_template(self, tenant: str, name: str) -> bool:
        return bool(self.search_dirs(tenant, name))
