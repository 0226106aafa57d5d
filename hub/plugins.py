"""The plugin manager: entry points in, registries out, broken plugins reported by name.

Every plugin, built-in or third-party, is an entry point of the group ``abandonment_hub``.
Hooks are called once here to build registries (source name → Source, sink name → Sink); the
request and job paths only read those dicts (a hook call costs ~4-26 µs, a dict lookup 0.1 µs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from jinja2.filters import FILTERS

from hub import hookspecs
from hub.hookspecs import ConversionProbe, Sink, Source
from hub.services import PluginServices

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "abandonment_hub"
DISTRIBUTION = "abandonment-hub"


@dataclass
class PluginInfo:
    """What ``hub plugins`` shows about one plugin."""

    name: str
    module: str
    version: str
    origin: str  # "built-in" or the distribution that installed it
    sources: list[str] = field(default_factory=list)
    sinks: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Registry:
    """The loaded plugins and what they provide."""

    pm: pluggy.PluginManager
    plugins: dict[str, PluginInfo]
    sources: dict[str, Source]
    sinks: dict[str, Sink]
    blueprints: list[tuple[str, Any]]
    commands: list[tuple[str, Any]]
    template_filters: dict[str, Callable]
    errors: list[str]
    services: dict[str, PluginServices] = field(default_factory=dict)
    probes: dict[str, ConversionProbe] = field(default_factory=dict)


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def load_plugins(entry_points: Iterable[Any] | None = None, extra: Iterable[Any] = ()) -> Registry:
    """Load every entry point (or the given ones) plus ``extra`` plugin objects.

    A plugin that fails to import, implements an unknown hook, has a hook with the wrong
    arguments, raises from a hook or claims a name another plugin already has is reported in
    ``errors`` (and on its :class:`PluginInfo`) and left out; the rest load.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    errors: list[str] = []

    candidates: list[tuple[str, Any, PluginInfo]] = []
    for ep in _entry_points() if entry_points is None else entry_points:
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else "unknown"
        info = PluginInfo(
            name=ep.name,
            module=ep.value,
            version=dist.version if dist is not None else "unknown",
            origin="built-in" if dist_name == DISTRIBUTION else dist_name,
        )
        infos[ep.name] = info
        try:
            candidates.append((ep.name, ep.load(), info))
        except Exception as exc:  # any import failure is the plugin's, not the hub's
            info.error = f"import failed: {exc!r}"
    for obj in extra:
        name = getattr(obj, "__name__", type(obj).__name__)
        info = PluginInfo(name=name, module=name, version="-", origin="registered in code")
        infos[name] = info
        candidates.append((name, obj, info))

    for name, obj, info in candidates:
        try:
            pm.register(obj, name=name)
        except Exception as exc:  # pluggy.PluginValidationError, ValueError (dup name)
            info.error = f"invalid hook: {exc}"
            continue
        unknown = [hc.name for hc in pm.get_hookcallers(obj) or [] if hc.spec is None]
        if unknown:
            pm.unregister(obj)
            info.error = f"unknown hook(s): {', '.join(unknown)}"
            continue
        info.hooks = sorted(hc.name for hc in pm.get_hookcallers(obj) or [])

    sources: dict[str, Source] = {}
    sinks: dict[str, Sink] = {}
    # a plugin filter named like one of Jinja2's would silently replace it (``e``, ``safe``)
    owner: dict[tuple[str, str], str] = {("template filter", f): "Jinja2" for f in FILTERS}
    blueprints: list[tuple[str, Any]] = []
    commands: list[tuple[str, Any]] = []
    filters: dict[str, Callable] = {}
    probes: dict[str, ConversionProbe] = {}
    probe_owner: dict[str, str] = {}

    services = {
        name: PluginServices(name, info.sinks, info.sources)
        for name, info in infos.items()
        if not info.error
    }

    def collect(hook_name: str) -> list[tuple[str, Any]]:
        """Call one hook plugin by plugin so a raising plugin is named and skipped.

        A hookimpl may ask for ``services`` (pluggy lets it take a subset of the spec's
        arguments); it gets its own plugin's object, never another's.
        """
        results = []
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            info = infos[impl.plugin_name]
            if info.error:
                continue
            kwargs = {"services": services[impl.plugin_name]} if impl.argnames else {}
            try:
                results.append((impl.plugin_name, impl.function(**kwargs)))
            except Exception as exc:
                info.error = f"{hook_name} raised {exc!r}"
        return results

    def take(kind: str, item: str, plugin: str, table: dict) -> bool:
        """Claim a name for ``plugin``; a name two plugins claim goes to neither."""
        if (kind, item) in owner and owner[(kind, item)] != plugin:
            errors.append(
                f'{kind} "{item}" is provided by both "{owner[(kind, item)]}" and '
                f'"{plugin}": uninstall one of them'
            )
            table.pop(item, None)
            return False
        owner[(kind, item)] = plugin
        return True

    def claim(kind: str, plugin: str, obj: Any, base: type, table: dict) -> None:
        item = getattr(obj, "name", None)
        if not isinstance(obj, base) or not isinstance(item, str):
            infos[plugin].error = f"{kind} hook returned {obj!r}, not a named {base.__name__}"
            return
        if take(kind, item, plugin, table):
            table[item] = obj
            getattr(infos[plugin], kind + "s").append(item)

    for plugin, result in collect("hub_sources"):
        for obj in result or []:
            claim("source", plugin, obj, Source, sources)
    for plugin, result in collect("hub_sinks"):
        for obj in result or []:
            claim("sink", plugin, obj, Sink, sinks)
    for plugin, result in collect("hub_blueprints"):
        blueprints.extend((plugin, bp) for bp in result or [])
    for plugin, result in collect("hub_commands"):
        commands.extend((plugin, cmd) for cmd in result or [])
    for plugin, result in collect("hub_conversion_probes"):
        for obj in result or []:
            item = getattr(obj, "source", None)
            if not isinstance(obj, ConversionProbe) or not isinstance(item, str):
                infos[
                    plugin
                ].error = (
                    f"conversion probe hook returned {obj!r}, not a ConversionProbe with a source"
                )
            elif take("conversion probe", item, plugin, probes):
                probes[item] = obj
                probe_owner[item] = plugin
    for plugin, result in collect("hub_template_filters"):
        for item, function in (result or {}).items():
            if take("template filter", item, plugin, filters):
                filters[item] = function

    # a plugin that broke half-way must not leave half of itself registered
    for info in infos.values():
        if info.error:
            for name in info.sources:
                sources.pop(name, None)
            for name in info.sinks:
                sinks.pop(name, None)
            blueprints = [(p, b) for p, b in blueprints if p != info.name]
            commands = [(p, c) for p, c in commands if p != info.name]
            for name in [s for s, p in probe_owner.items() if p == info.name]:
                probes.pop(name, None)
            errors.append(f'plugin "{info.name}" ({info.module}) is disabled: {info.error}')
    for message in errors:
        log.error(message)
    # a probe for a source no plugin provides would never be asked
    probes = {name: probe for name, probe in probes.items() if name in sources}
    return Registry(
        pm, infos, sources, sinks, blueprints, commands, filters, errors, services, probes
    )
