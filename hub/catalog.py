"""The tenants one process serves, reloaded when their files change — no restart needed.

Each process (every gunicorn worker, every ``hub worker``) keeps one :class:`TenantCatalog` on
its :class:`hub.app.Hub`. Whenever the request or job path asks for the tenants, the catalog
stats ``tenants/*.toml`` and the template folders, at most once per :attr:`interval` seconds,
and reloads only the files that changed (or all of them when template folders changed, since a
step's template must exist). There is no watcher thread: a few ``stat`` calls per second cost
microseconds, survive gunicorn's fork and need no shutdown, and an idle process has nothing to
be late for.

A file that no longer loads keeps its tenant's last good version in service: a typo in a
running shop's file must not stop its recovery messages. "Last good" is the file's, not this
process's: a process that never read the version before the broken edit (no request came in
between) would otherwise serve an older one than its siblings. Whoever loads a good version
keeps a copy under ``HUB_VAR_DIR`` (:mod:`hub.lastgood`), and a broken file falls back to the
newer of that copy and the version this process loaded. Every change is logged once per
process; ``hub config check`` lists the errors.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.lastgood import LastGood
from hub.tenants import ConfigIssue, TemplateLookup, Tenant, load_tenant_file

log = logging.getLogger("hub.tenants")

# An edit within the file system's timestamp granularity may leave the stat unchanged; a file
# whose mtime was this recent when it was read is compared by content until it is older
# (git's "racily clean" rule).
RACY_SECONDS = 2.0


@dataclass
class TenantFile:
    """What the catalog knows of one tenant file."""

    path: Path
    stamp: tuple[int, ...]
    digest: str
    racy: bool
    issues: list[ConfigIssue]
    serving: Tenant | None = None  # the version in service: this file's, or its last good one
    serving_ns: int = 0  # when the version in service was read from the file (time.time_ns())

    @property
    def slug(self) -> str:
        return self.path.stem

    @property
    def served_since(self) -> datetime | None:
        """When the version in service was read from the file (by any process of this var/)."""
        if self.serving is None:
            return None
        return datetime.fromtimestamp(self.serving_ns / 1e9, UTC)

    @property
    def stale(self) -> bool:
        """The file has errors but an older version of the tenant is still served."""
        return bool(self.issues) and self.serving is not None


class TenantCatalog:
    """Loads ``<config_dir>/tenants/*.toml`` and keeps them current (see the module doc)."""

    interval = 1.0  # seconds between two looks at the files, per process

    def __init__(
        self,
        config_dir: Path,
        sources: Mapping[str, Any],
        sinks: Mapping[str, Any],
        environ: Mapping[str, str],
        templates: TemplateLookup,
        clock: Callable[[], float] = time.monotonic,
        last_good: LastGood | None = None,
    ) -> None:
        """``last_good``: the copies shared with the other processes; without it a broken file
        falls back to the version this process loaded."""
        self.config_dir = Path(config_dir)
        self._tenant_dir = str(self.config_dir / "tenants")
        self.sources, self.sinks, self.environ = sources, sinks, environ
        self.templates = templates
        self.clock = clock
        self.last_good = last_good
        self.files: dict[str, TenantFile] = {}  # by path: str, as Path costs on this path
        self._tenants: dict[str, Tenant] = {}
        self._dir_issue: ConfigIssue | None = None
        self._templates_stamp: tuple = ()
        self._checked: float | None = None
        self._lock = threading.Lock()
        self.refresh()

    @property
    def tenant_dir(self) -> Path:
        return self.config_dir / "tenants"

    def current(self) -> dict[str, Tenant]:
        """The tenants to serve now; checks the files first when ``interval`` has passed.

        The dict is replaced, never changed, by a reload, so a request holding it sees one
        consistent set. A thread that finds another one reloading uses the current set.
        """
        if self._checked is None or self.clock() - self._checked >= self.interval:
            self.refresh(wait=False)
        return self._tenants

    def issues(self) -> list[ConfigIssue]:
        """Every error of every tenant file as loaded last, in file order."""
        self.current()
        found = [self._dir_issue] if self._dir_issue else []
        for path in sorted(self.files):
            found.extend(self.files[path].issues)
        return found

    def broken(self) -> list[TenantFile]:
        """The tenant files with errors, whether or not an older version is still served."""
        self.current()
        return [f for _p, f in sorted(self.files.items()) if f.issues]

    def refresh(self, wait: bool = True) -> None:
        """Reload what changed since the last check (everything, the first time)."""
        if not self._lock.acquire(blocking=wait):
            return
        try:
            first = self._checked is None
            self._checked = self.clock()
            self._reload(first)
        finally:
            self._lock.release()

    def _reload(self, first: bool) -> None:
        stamps = self._scan()
        templates_stamp = self._stamp_templates()
        everything = templates_stamp != self._templates_stamp
        self._templates_stamp = templates_stamp
        tenants = dict(self._tenants)
        changed = False
        for path in [p for p in self.files if p not in stamps]:
            gone = self.files.pop(path)
            changed = True
            if gone.serving is not None and tenants.pop(gone.slug, None) is not None:
                log.warning("tenant %s is no longer served: %s was removed", gone.slug, path)
            if self.last_good is not None:
                self.last_good.forget(gone.slug)
        for path, stamp in sorted(stamps.items()):
            known = self.files.get(path)
            if known is not None and known.stamp == stamp and not known.racy and not everything:
                continue
            read_ns = time.time_ns()  # before the read: the content is at least this new
            try:
                content = Path(path).read_bytes()
            except OSError:
                continue  # removed between the scan and the read: the next check sees it
            digest = hashlib.sha256(content).hexdigest()
            if known is not None and known.digest == digest and not everything:
                known.stamp, known.racy = stamp, _racy(stamp)
                continue
            changed = True
            self._load(path, stamp, digest, (content, read_ns), known, tenants, first)
        if changed:
            self._tenants = tenants

    def _load(
        self,
        path: str,
        stamp: tuple[int, ...],
        digest: str,
        read: tuple[bytes, int],
        known: TenantFile | None,
        tenants: dict[str, Tenant],
        first: bool,
    ) -> None:
        content, read_ns = read
        tenant, issues = self._parse(path, content)
        entry = TenantFile(Path(path), stamp, digest, _racy(stamp), issues)
        self.files[path] = entry
        slug = entry.slug
        # a reload forced by a template folder leaves most files as they were: say nothing then
        unchanged = known is not None and known.digest == digest and known.issues == issues
        if tenant is not None and not issues:
            entry.serving, entry.serving_ns = tenant, read_ns
            tenants[slug] = tenant
            if self.last_good is not None:
                self.last_good.put(slug, content, read_ns)
            if not first and not unchanged:
                log.info("tenant %s %s from %s", slug, "reloaded" if known else "loaded", path)
            return
        fallback = self._last_good_version(path, known)
        if fallback is not None:
            entry.serving, entry.serving_ns = fallback
            tenants[slug] = entry.serving
        else:
            tenants.pop(slug, None)
        if unchanged:
            return
        count = f"{len(issues)} config error{'s' if len(issues) != 1 else ''}"
        if entry.serving is not None:
            log.error(
                "tenant %s: %s has %s; still serving the version loaded at %s UTC "
                "(hub config check lists them)",
                slug,
                path,
                count,
                f"{entry.served_since:%Y-%m-%d %H:%M:%S}",
            )
        else:
            log.error(
                "tenant %s is not served: %s in %s (hub config check lists them)",
                slug,
                count,
                path,
            )

    def _parse(self, path: str, content: bytes) -> tuple[Tenant | None, list[ConfigIssue]]:
        try:
            text: str | None = content.decode("utf-8")
        except UnicodeDecodeError:
            text = None  # the loader reads it again and reports the decoding error
        try:
            return load_tenant_file(
                Path(path),
                self.sources,
                self.sinks,
                self.environ,
                templates=self.templates,
                text=text,
            )
        except Exception as exc:  # a loader bug must not fail every request of every tenant
            log.exception("loading %s failed", path)
            return None, [ConfigIssue(path, "", f"cannot load: {exc!r}")]

    def _last_good_version(self, path: str, known: TenantFile | None) -> tuple[Tenant, int] | None:
        """The newest good version of a now broken file: the shared copy when another process
        read a newer one than this process loaded (and it still loads), else this process's."""
        mine = None
        if known is not None and known.serving is not None:
            mine = (known.serving, known.serving_ns)
        kept = self.last_good.get(Path(path).stem) if self.last_good is not None else None
        if kept is None or (mine is not None and kept.read_ns <= mine[1]):
            return mine
        tenant, issues = self._parse(path, kept.content)
        if tenant is None or issues:  # valid once, not now (a template folder went away)
            return mine
        return tenant, kept.read_ns

    def _scan(self) -> dict[str, tuple[int, ...]]:
        """``{path: stat stamp}`` of every tenant file; one ``scandir`` and a stat per file."""
        try:
            with os.scandir(self._tenant_dir) as scan:
                entries = list(scan)
        except OSError:
            self._dir_issue = ConfigIssue(str(self.tenant_dir), "", "no such directory")
            return {}
        self._dir_issue = None
        stamps = {}
        for entry in entries:
            if entry.name.endswith(".toml"):
                try:
                    stamps[entry.path] = _stamp(entry.stat())
                except OSError:
                    continue
        return stamps

    def _stamp_templates(self) -> tuple:
        """The mtimes of the template folders down to ``templates/<tenant>/<name>/``: a
        folder's mtime changes when a template is added, removed or renamed in it."""
        found: list[tuple[str, int]] = []
        _folder_mtimes(str(self.config_dir / "templates"), 2, found)
        return tuple(found)


def _folder_mtimes(folder: str, depth: int, found: list[tuple[str, int]]) -> None:
    try:
        found.append((folder, os.stat(folder).st_mtime_ns))
        if depth:
            with os.scandir(folder) as entries:
                subfolders = sorted(e.path for e in entries if e.is_dir())
    except OSError:
        return
    for sub in subfolders if depth else ():
        _folder_mtimes(sub, depth - 1, found)


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def _racy(stamp: tuple[int, ...]) -> bool:
    return time.time() - stamp[0] / 1e9 < RACY_SECONDS
