"""The tenants one process serves, reloaded when their files change — no restart needed.

Each process (every gunicorn worker, every ``hub worker``) keeps one :class:`TenantCatalog` on
its :class:`hub.app.Hub`. Whenever the request or job path asks for the tenants, the catalog
stats ``tenants/*.toml`` and the template folders, at most once per :attr:`interval` seconds,
and reloads only the files that changed (or all of them when template folders changed, since a
step's template must exist). There is no watcher thread: a few ``stat`` calls per second cost
microseconds, survive gunicorn's fork and need no shutdown, and an idle process has nothing to
be late for.

A file that no longer loads keeps its tenant's last good version in service: a typo in a
running shop's file must not stop its recovery messages. Every change is logged once per
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
    served_since: datetime | None = None

    @property
    def slug(self) -> str:
        return self.path.stem

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
    ) -> None:
        self.config_dir = Path(config_dir)
        self._tenant_dir = str(self.config_dir / "tenants")
        self.sources, self.sinks, self.environ = sources, sinks, environ
        self.templates = templates
        self.clock = clock
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
        for path, stamp in sorted(stamps.items()):
            known = self.files.get(path)
            if known is not None and known.stamp == stamp and not known.racy and not everything:
                continue
            try:
                content = Path(path).read_bytes()
            except OSError:
                continue  # removed between the scan and the read: the next check sees it
            digest = hashlib.sha256(content).hexdigest()
            if known is not None and known.digest == digest and not everything:
                known.stamp, known.racy = stamp, _racy(stamp)
                continue
            changed = True
            self._load(path, stamp, digest, content, known, tenants, first)
        if changed:
            self._tenants = tenants

    def _load(
        self,
        path: str,
        stamp: tuple[int, ...],
        digest: str,
        content: bytes,
        known: TenantFile | None,
        tenants: dict[str, Tenant],
        first: bool,
    ) -> None:
        try:
            text: str | None = content.decode("utf-8")
        except UnicodeDecodeError:
            text = None  # the loader reads it again and reports the decoding error
        try:
            tenant, issues = load_tenant_file(
                Path(path),
                self.sources,
                self.sinks,
                self.environ,
                templates=self.templates,
                text=text,
            )
        except Exception as exc:  # a loader bug must not fail every request of every tenant
            log.exception("loading %s failed", path)
            tenant, issues = None, [ConfigIssue(path, "", f"cannot load: {exc!r}")]
        entry = TenantFile(Path(path), stamp, digest, _racy(stamp), issues)
        self.files[path] = entry
        slug = entry.slug
        # a reload forced by a template folder leaves most files as they were: say nothing then
        unchanged = known is not None and known.digest == digest and known.issues == issues
        if tenant is not None and not issues:
            entry.serving, entry.served_since = tenant, datetime.now(UTC)
            tenants[slug] = tenant
            if not first and not unchanged:
                log.info("tenant %s %s from %s", slug, "reloaded" if known else "loaded", path)
            return
        if known is not None and known.serving is not None:
            entry.serving, entry.served_since = known.serving, known.served_since
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
