"""Outbound HTTP for sinks: ``requests`` sessions that cannot be pointed at our own network.

Tenants configure URLs (CRM instances, webhook targets) and browsers hand us push endpoints, so
every outbound call is a potential SSRF. :func:`safe_session` resolves the host itself, refuses
if *any* resolved address is loopback, private, link-local, shared (100.64/10), multicast,
reserved, unspecified or an IPv4-mapped form of those, then connects to the address it checked
(no second lookup an attacker could rebind). TLS still verifies the certificate against the host
name. Redirects are never followed: sinks treat a 3xx as a permanent failure. Operators may
allow CIDRs for development with ``HUB_ALLOW_PRIVATE_NETWORKS``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterable
from datetime import UTC, datetime

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

METADATA_HOSTS = {"metadata.google.internal", "metadata"}


class BlockedAddress(requests.exceptions.ConnectionError):
    """The destination resolves to an address outbound calls may not reach."""


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    shared = ipaddress.ip_network("100.64.0.0/10")
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
        or (isinstance(ip, ipaddress.IPv4Address) and ip in shared)
    )


def check_destination(host: str, port: int, allowed: Iterable[str] = ()) -> list[tuple]:
    """Resolve ``host`` and return the addrinfo list, or raise :class:`BlockedAddress`
    (``socket.gaierror`` when the name does not resolve)."""
    if host.lower().rstrip(".") in METADATA_HOSTS:
        raise BlockedAddress(f"{host} is a cloud metadata host")
    networks = [ipaddress.ip_network(c, strict=False) for c in allowed]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)  # gaierror propagates
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if _blocked(ip) and not any(ip in net for net in networks):
            raise BlockedAddress(
                f"{host} resolves to {ip}, a non-public address; set "
                f"HUB_ALLOW_PRIVATE_NETWORKS to allow it (development only)"
            )
    return infos


def _connect(conn: HTTPConnection, allowed: tuple[str, ...]) -> socket.socket:
    """Connect to a checked address. Failures keep urllib3's own types, so ``requests``
    raises ``ConnectTimeout`` for a connect timeout and ``ConnectionError`` (from
    ``NewConnectionError``) for refusals and names that do not resolve: a sink can tell
    "nothing was sent, retry" from a failure mid-request."""
    try:
        infos = check_destination(conn._dns_host, conn.port, allowed)  # noqa: SLF001
    except socket.gaierror as exc:
        raise NewConnectionError(conn, f"cannot resolve {conn.host}: {exc}") from None
    last: OSError | None = None
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            if isinstance(conn.timeout, int | float):
                sock.settimeout(conn.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect(address)
            return sock
        except TimeoutError:
            sock.close()
            raise ConnectTimeoutError(
                conn, f"connection to {conn.host} timed out ({conn.timeout} s)"
            ) from None
        except OSError as exc:
            sock.close()
            last = exc
    raise NewConnectionError(conn, f"cannot connect to {conn.host}: {last}")


def _pool_classes(allowed: tuple[str, ...]) -> dict[str, type]:
    class SafeHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _connect(self, allowed)

    class SafeHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _connect(self, allowed)

    class SafeHTTPPool(HTTPConnectionPool):
        ConnectionCls = SafeHTTPConnection

    class SafeHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = SafeHTTPSConnection

    return {"http": SafeHTTPPool, "https": SafeHTTPSPool}


class SafeAdapter(HTTPAdapter):
    """Connects only to checked addresses; with ``ssl_context``, verifies TLS against it.

    ``requests`` would otherwise point every connection at its own CA file (``verify=True``)
    or at one file instead of it (``verify=path``); a context lets the operator *add* a
    private CA to the default store (``HUB_CA_BUNDLE``, see :mod:`hub.outbound`).
    """

    def __init__(
        self,
        allowed: tuple[str, ...] = (),
        ssl_context: ssl.SSLContext | None = None,
        **kwargs,  # noqa: ANN003
    ) -> None:
        self.allowed = tuple(allowed)
        self.ssl_context = ssl_context
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        if self.ssl_context is not None:
            kwargs["ssl_context"] = self.ssl_context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.allowed)

    def cert_verify(self, conn, url: str, verify, cert) -> None:  # noqa: ANN001
        super().cert_verify(conn, url, verify, cert)
        if self.ssl_context is not None and verify is True and url.lower().startswith("https"):
            conn.ca_certs = None  # the context already holds the default store and the bundle
            conn.ca_cert_dir = None


def safe_session(
    allowed: Iterable[str] = (),
    user_agent: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> requests.Session:
    """A ``requests.Session`` for tenant-controlled URLs; pass ``allow_redirects=False`` too.

    ``trust_env`` is off: proxies and CA bundles from the environment must not silently
    change where a tenant's data goes; the operator's CA comes in as ``ssl_context``.
    """
    session = requests.Session()
    session.trust_env = False
    adapter = SafeAdapter(tuple(allowed), ssl_context)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    from hub.version import __version__

    session.headers["User-Agent"] = user_agent or f"abandonment-hub/{__version__}"
    return session


def exception_chain(exc: BaseException):  # noqa: ANN201 - Iterator[BaseException]
    """Every exception inside a ``requests`` error: args, causes, contexts and urllib3's
    ``reason``, each once. ``requests`` nests urllib3's errors several levels deep."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if id(item) in seen or not isinstance(item, BaseException):
            continue
        seen.add(id(item))
        yield item
        stack.extend(item.args)
        stack.extend(x for x in (item.__cause__, item.__context__) if x is not None)
        stack.append(getattr(item, "reason", None))


def blocked_reason(exc: BaseException) -> str | None:
    """The :class:`BlockedAddress` message inside a ``requests`` error, if that is its cause.

    Sinks use it to turn a refused destination into a permanent failure, not a retry.
    """
    return next((str(e) for e in exception_chain(exc) if isinstance(e, BlockedAddress)), None)


def never_connected(exc: BaseException) -> bool:
    """True when the error proves no byte of the request reached the server: a refused or
    timed-out connect, a name that does not resolve, or a refused destination. A sink may
    retry those safely; anything else (a connection lost after sending) may have arrived."""
    return any(
        isinstance(e, NewConnectionError | ConnectTimeoutError | socket.gaierror | BlockedAddress)
        for e in exception_chain(exc)
    )


def retry_after_seconds(value: str | None, now: float | datetime | None = None) -> float | None:
    """``Retry-After`` (``"120"`` or an HTTP date) as seconds from now; ``None`` if absent or
    unreadable. Sinks pass it to :class:`hub.RetryableError`; the engine clamps it."""
    import time
    from email.utils import parsedate_to_datetime

    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    if isinstance(now, datetime):
        now = now.timestamp()
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)
