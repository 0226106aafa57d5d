"""Message templates: ``<channel>.<locale>.<ext>`` files rendered by Jinja2 in a sandbox.

A step's ``template`` is looked up as ``templates/<tenant>/<name>/``, then ``templates/<name>/``
under the config dir, then in the template dirs sinks declare, then the hub's defaults. The
language is the first of the customer's locale, its language, the tenant's locale and ``en`` for
which files exist.

A template may ``{% extends "_layouts/<file>" %}``: the ``_layouts`` folder is looked up in the
same order (``templates/<tenant>/_layouts/``, ``templates/_layouts/``, the sinks' dirs, the
hub's defaults), so a tenant restyles every message by copying one layout into its config dir.
``_layouts`` is never a template name itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, ChoiceLoader, FileSystemLoader, PrefixLoader
from jinja2.sandbox import SandboxedEnvironment

DEFAULT_DIR = Path(__file__).parent / "default_templates"
LAYOUTS = "_layouts"  # shared layouts next to the template folders, never a template name


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
        self._envs: dict[tuple[Path, tuple[str, ...]], SandboxedEnvironment] = {}

    def _env(self, tenant: str, directory: Path) -> SandboxedEnvironment:
        """The environment for one template folder: its own files by plain name, the layouts
        this tenant sees under ``_layouts/``. Cached per folder and set of layout folders, so
        tenants without layouts of their own share one cache of compiled templates."""
        layout_dirs = tuple(str(d) for d in self.layout_dirs(tenant) if d.is_dir())
        env = self._envs.get((directory, layout_dirs))
        if env is None:
            env = SandboxedEnvironment(
                loader=ChoiceLoader(
                    [
                        PrefixLoader({LAYOUTS: FileSystemLoader(list(layout_dirs))}),
                        FileSystemLoader(str(directory)),
                    ]
                ),
                autoescape=lambda name: bool(name) and name.endswith((".html", ".htm")),
                undefined=ChainableUndefined,  # an optional field left out renders empty
                keep_trailing_newline=True,
            )
            env.filters.update(self.filters)
            self._envs[(directory, layout_dirs)] = env
        return env

    def layout_dirs(self, tenant: str) -> list[Path]:
        """Where ``_layouts/<file>`` is looked up, first match wins: the same order as
        templates, so the tenant's own layout beats the config dir's, which beats the hub's."""
        return [root / LAYOUTS for root in self._roots(tenant)]

    def _roots(self, tenant: str) -> list[Path]:
        templates = self.config_dir / "templates"
        return [templates / tenant, templates, *self.sink_dirs, DEFAULT_DIR]

    def search_dirs(self, tenant: str, name: str) -> list[Path]:
        if name == LAYOUTS:  # its files look like templates (email.en.html) but are not
            return []
        return [d for d in (root / name for root in self._roots(tenant)) if d.is_dir()]

    def find(
        self, tenant: str, name: str, channel: str, locales: Iterable[str]
    ) -> tuple[Path, str, dict[str, str]]:
        """Return (directory, locale, {ext: file name}) of the best template."""
        dirs = self.search_dirs(tenant, name)
        for locale in locales:
            for directory in dirs:
                files = _files(directory, channel, locale)
                if files:
                    return directory, locale, files
        raise TemplateMissing(
            f'no "{name}" template for channel {channel} '
            f"(looked in {', '.join(str(d) for d in dirs) or 'nowhere'})"
        )

    def locales(self, tenant: str, name: str, channel: str) -> set[str]:
        """The locales that have files of template ``name`` for ``channel``, found by the
        same lookup as :meth:`find`: ``hub config check`` uses it so that a name the renderer
        would not find (``remider``) fails at load, not when the first message is due."""
        return {
            locale
            for directory in self.search_dirs(tenant, name)
            for locale, _ext in _split(directory, channel)
        }

    def names(self, tenant: str, channel: str) -> set[str]:
        """Every template name this tenant can use on ``channel`` (for "did you mean")."""
        return {
            folder.name
            for root in self._roots(tenant)
            if root.is_dir()
            for folder in root.iterdir()
            if folder.name != LAYOUTS and folder.is_dir() and _split(folder, channel)
        }

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
        env = self._env(tenant, directory)
        parts = {
            ext: env.get_template(fname).render(**context, locale=locale)
            for ext, fname in files.items()
        }
        return locale, parts

    def has_template(self, tenant: str, name: str) -> bool:
        return bool(self.search_dirs(tenant, name))


def _split(directory: Path, channel: str) -> list[tuple[str, str]]:
    """(locale, ext) of every ``<channel>.<locale>.<ext>`` file in ``directory``."""
    prefix = f"{channel}."
    out = []
    for path in directory.glob(prefix + "*.*"):
        locale, _, ext = path.name[len(prefix) :].partition(".")
        if locale and ext:
            out.append((locale, ext))
    return out


def _files(directory: Path, channel: str, locale: str) -> dict[str, str]:
    """{ext: file name} of ``<channel>.<locale>.*`` in ``directory``."""
    prefix = f"{channel}.{locale}."
    return {p.name[len(prefix) :]: p.name for p in directory.glob(prefix + "*")}
