"""What the Server believes about the peer of a sync/async API request.

- **Its IP.** ``X-Forwarded-For`` is read only when the TCP peer is one of
  ``server.trusted_proxies`` (the reverse proxy in front); the client is then the right-most
  address that is not itself a trusted proxy. From anyone else the header is ignored: the
  caller's IP is the TCP peer address.
- **Credentials it sent.** Admin and access-key credentials, cookies and proxy credentials
  never reach the task envelope (``_DFF_HTTP_REQUEST``), whichever route they were sent to.
- **Cross-origin form posts.** A browser sends the cached HTTP Basic credentials of an entry
  with any request, including a form posted from another site; such posts to an ``httpBasic``
  entry are refused (403) unless its ``apiAuth`` sets ``allowCrossOriginForms``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from fluxfunc_common.errors import BizCondition

# lower-case names of request headers that carry credentials (never copied into a task)
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie",
                                "x-dff-ak-id", "x-dff-ak-timestamp", "x-dff-ak-nonce",
                                "x-dff-ak-sign"})
# the content types an HTML form can send without CORS
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})

Networks = Sequence[IPv4Network | IPv6Network]


def _trusted(address: str | None, trusted: Networks) -> bool:
    if not address or not trusted:
        return False
    try:
        ip = ip_address(address.strip())
    except ValueError:
        return False
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped:  # a dual-stack listener's IPv4 peer
        ip = ip.ipv4_mapped
    return any(ip in net for net in trusted)


def is_trusted(address: str | None, trusted: Networks) -> bool:
    """Whether ``address`` is one of the trusted proxies."""
    return _trusted(address, trusted)


def client_ips(remote: str | None, forwarded: str, trusted: Networks) -> tuple[str | None, list[str]]:
    """(the caller's IP, the forwarded chain believed) for a peer ``remote`` that sent
    ``X-Forwarded-For: forwarded``; the chain is empty unless ``remote`` is trusted."""
    if not _trusted(remote, trusted):
        return remote, []
    chain = [ip.strip() for ip in forwarded.split(",") if ip.strip()]
    for ip in reversed(chain):
        if not _trusted(ip, trusted):
            return ip, chain
    return (chain[0] if chain else remote), chain


def without_credentials(headers: Mapping[str, str], also: set[str]) -> dict[str, str]:
    """Headers (lower-case names) minus credentials and the names in ``also``."""
    return {name: v for k, v in headers.items()
            if (name := k.lower()) not in CREDENTIAL_HEADERS and name not in also}


def _cross_origin(request: web.Request) -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return False  # not a browser, or a browser that sends neither: nothing to tell
    return origin == "null" or urlsplit(origin).netloc.lower() != request.host.lower()


def check_form_origin(request: web.Request, api_auth: Any) -> None:
    """403 for a cross-origin form post to an ``httpBasic``/``httpDigest`` entry that did not
    opt in."""
    if not isinstance(api_auth, dict) or api_auth.get("type") not in ("httpBasic", "httpDigest") \
            or api_auth.get("allowCrossOriginForms") or request.method != "POST":
        return
    ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if ctype in FORM_TYPES and _cross_origin(request):
        raise BizCondition("cross-origin form posts to an entry with HTTP Basic auth are refused "
                           "(set apiAuth.allowCrossOriginForms to allow them)")
