"""Where a webhook may go, and the one POST that takes it there.

A receiver's URL is an invitation to make this server connect somewhere
(server-side request forgery). So the host is resolved at send time, every
address it resolves to must be globally routable (`ipaddress`'s is_global:
no private, loopback, link-local, shared, reserved or documentation ranges),
and the connection goes to the checked address itself, so a second lookup
cannot swap in another (DNS rebinding). Redirects are never followed: a 3xx
counts as a failed attempt.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import urllib3
from urllib3.util import parse_url

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
ERROR_LENGTH = 200


class RefusedTarget(Exception):
    """The URL is malformed or points at an address webhooks may not reach."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def parse(url: str) -> Target:
    try:
        parts = parse_url(url)
    except ValueError as exc:
        raise RefusedTarget(f"not a URL: {url!r}") from exc
    if parts.scheme not in ("http", "https") or not parts.host:
        raise RefusedTarget(f"expected an http or https URL, got {url!r}")
    if parts.auth:
        raise RefusedTarget("credentials in the URL would be sent in the clear to logs; drop them")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.host.strip("[]")
    return Target(parts.scheme, host, port, parts.request_uri)


def resolve(target: Target, *, allow_private: bool) -> list[str]:
    """Every address the host has now; refused if any of them is not global."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RefusedTarget(f"cannot resolve {target.host}: {exc.strerror}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private:
        for address in addresses:
            # An IPv6 zone ("fe80::1%eth0") is link-local anyway; drop it before parsing.
            ip = ipaddress.ip_address(address.split("%")[0])
            if not ip.is_global:
                raise RefusedTarget(
                    f"{target.host} resolves to {address}, which is not a public address "
                    "(set DRIP_WEBHOOKS_ALLOW_PRIVATE=true to allow it while developing)"
                )
    return addresses


def check(url: str, *, allow_private: bool) -> None:
    """Refuse a URL that cannot be reached safely; a name that does not resolve yet may pass."""
    target = parse(url)
    try:
        ipaddress.ip_address(target.host)
    except ValueError:
        try:
            resolve(target, allow_private=allow_private)
        except RefusedTarget as exc:
            if "cannot resolve" not in str(exc):
                raise
        return
    resolve(target, allow_private=allow_private)


def post(url: str, body: bytes, headers: dict[str, str], *, allow_private: bool) -> int:
    """POST body to url through a checked address; the HTTP status (redirects not followed)."""
    target = parse(url)
    address = resolve(target, allow_private=allow_private)[0]
    options: dict[str, object] = {}
    if target.scheme == "https":
        # TLS still checks the certificate against the name, not the address we dialled.
        options = {"server_hostname": target.host, "assert_hostname": target.host}
    pool_class = (
        urllib3.HTTPSConnectionPool if target.scheme == "https" else urllib3.HTTPConnectionPool
    )
    pool = pool_class(
        address,
        target.port,
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
        retries=False,
        maxsize=1,
        **options,  # type: ignore[arg-type]
    )
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": target.host_header},
            redirect=False,
            assert_same_host=False,
            preload_content=False,
        )
        response.drain_conn()
        return int(response.status)
    finally:
        pool.close()
