"""The last good content of each tenant file, shared by the processes of one ``HUB_VAR_DIR``.

A process only re-reads the tenant files while it serves requests or jobs. A gunicorn worker
that got no request between two edits never read the version in between; if the later edit
is broken, the version this process last loaded is older than the file's last good one (an
old webhook secret: 401s from that worker only). So whoever validates a good version copies
its bytes to ``<HUB_VAR_DIR>/tenants/<slug>.toml``, and a process that finds a file broken
serves that copy. A process started after a broken edit serves it too, like those that ran.

The copy is the file's own text (``${VAR}`` references, no secrets: they live in the
environment). Its mtime is the wall-clock time at which a process read that content from the
tenant file, so a process that read an older version cannot replace a newer copy: the
compare-and-replace runs under a lock file, and ``os.replace`` makes each copy appear whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("hub.tenants")


@dataclass(frozen=True)
class Copy:
    """One tenant file's last good content and when a process read it from the file."""

    content: bytes
    read_ns: int  # time.time_ns() just before the read


class LastGood:
    """The copies in ``folder``; ``writable=False`` (reading commands) only reads them."""

    def __init__(self, folder: Path, writable: bool = True) -> None:
        self.folder = Path(folder)
        self.writable = writable
        self._warned = False

    def get(self, slug: str) -> Copy | None:
        """The copy of ``slug``'s last good content, if any process kept one."""
        try:
            with open(self.folder / f"{slug}.toml", "rb") as handle:
                return Copy(handle.read(), os.fstat(handle.fileno()).st_mtime_ns)
        except OSError:
            return None

    def put(self, slug: str, content: bytes, read_ns: int) -> None:
        """Keep ``content`` (valid, read from the file at ``read_ns``) unless a newer read is
        kept already. A var/ that cannot be written costs the sharing, never a request."""
        if not self.writable:
            return
        kept = self.get(slug)
        if kept is not None and (kept.content == content or kept.read_ns > read_ns):
            return  # the usual case at start-up: every process finds the copy it would write
        try:
            with self._locked():
                kept = self.get(slug)
                if kept is not None and kept.read_ns > read_ns:
                    return
                temporary = self.folder / f".{slug}.{os.getpid()}.tmp"
                temporary.write_bytes(content)
                os.utime(temporary, ns=(read_ns, read_ns))
                os.replace(temporary, self.folder / f"{slug}.toml")
        except OSError as exc:
            self._warn(exc)

    def forget(self, slug: str) -> None:
        """The tenant file was removed: a file of that name created later starts afresh."""
        if not self.writable:
            return
        try:
            with self._locked():
                (self.folder / f"{slug}.toml").unlink(missing_ok=True)
        except OSError as exc:
            self._warn(exc)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _warn(self, exc: OSError) -> None:
        if not self._warned:  # once per process: a read-only var/ would say it on every edit
            self._warned = True
            log.warning(
                "cannot keep tenants' last good versions in %s (%s): a process that finds a "
                "file broken falls back to the version it loaded itself",
                self.folder,
                exc,
            )
