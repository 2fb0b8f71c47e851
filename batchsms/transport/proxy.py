"""Which proxy a request goes through: ``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``.

Place in the flow: the run's set-up reads the environment once into :class:`ProxySettings`;
client.py (and iam.py) ask :meth:`ProxySettings.for_url` for each target and pass the
:class:`Proxy` it gives to aiohttp (``proxy=``, ``proxy_headers=``). Pure: no I/O, no global
state, so it is tested as a table.

The variables mean what they mean to curl, pip, requests and the SDK (docs/reference.md §6):

- ``https_proxy`` / ``HTTPS_PROXY`` for ``https://`` targets, ``http_proxy`` / ``HTTP_PROXY``
  for ``http://`` ones; the lower-case form wins when both are set (as in requests and
  urllib); a proxy without a scheme is ``http://``; empty is unset.
- ``user:password@`` in a proxy URL becomes a ``Proxy-Authorization: Basic`` header
  (percent-decoded; aiohttp's ``BasicAuth``/``proxy_auth`` is deprecated): pass
  :meth:`Proxy.headers` as aiohttp's ``proxy_headers`` (it sends them on the CONNECT of an
  ``https://`` target) *and* add :meth:`Proxy.request_headers` to the request's own headers
  after signing (for an ``http://`` target aiohttp sends the request itself to the proxy and
  ignores ``proxy_headers``). The password is never part of the URL handed on, and never
  shown: :attr:`Proxy.shown` and every ``repr`` and message have ``***`` for it;
  :meth:`Proxy.secrets` names it (and its Basic form) for the Redactor.
- ``no_proxy`` / ``NO_PROXY``: ``*`` (every host), host names (``example.com`` also covers its
  subdomains; a leading ``.`` or ``*.`` is the same), IP addresses and CIDR blocks
  (``10.0.0.0/8``), each optionally with ``:port``.
- Never for the credential endpoints: link-local addresses (the metadata service's
  169.254.169.254) and the hosts given as ``exempt`` (the pod-identity URI) are always direct.
  (sources.py opens its own sessions without a proxy anyway; this makes the rule hold for any
  other caller too.)
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from batchsms.errors import UsageError

__all__ = ["Proxy", "ProxySettings", "shown_url"]

HIDDEN = "***"


def _hostport(netloc: str) -> tuple[str, int | None]:
    """(lower-cased host without brackets, port) of ``netloc`` with any userinfo dropped."""
    bare = netloc.rpartition("@")[2]
    if bare.startswith("["):
        host, _, rest = bare[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = bare.partition(":")
    return host.lower().rstrip("."), int(port) if port.isdigit() else None


def shown_url(url: str) -> str:
    """``url`` fit for a message: a password in it replaced with ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a proxy URL that cannot be parsed)"
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:{HIDDEN}@{hostport}").geturl()


@dataclass(frozen=True, slots=True, repr=False)
class Proxy:
    """One proxy: its URL without credentials, and the credentials (user, password)."""

    url: str
    user: str | None = None
    password: str = ""

    @classmethod
    def parse(cls, value: str, variable: str) -> Proxy:
        """A proxy from a variable's value; UsageError (without the password) if it is not one."""
        text = value.strip()
        if "://" not in text:
            text = "http://" + text
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise UsageError(f"{variable} is not a proxy URL: {shown_url(text)}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{variable} is not an http(s) proxy URL: {shown_url(text)}")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        url = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
        if parts.username is None:
            return cls(url)
        return cls(url, unquote(parts.username), unquote(parts.password or ""))

    @property
    def shown(self) -> str:
        """The proxy for a message or a log: the user named, the password never."""
        if self.user is None:
            return self.url
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{self.user}:{HIDDEN}@{rest}"

    def headers(self) -> dict[str, str]:
        """aiohttp's ``proxy_headers``: the credentials, if any, as Basic authorization."""
        if self.user is None:
            return {}
        pair = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return {"Proxy-Authorization": f"Basic {pair}"}

    def request_headers(self, target: str) -> dict[str, str]:
        """Headers to add to a request for ``target`` itself: the credentials when the target
        is ``http://`` (no tunnel: the proxy reads the request), else none (a CONNECT tunnel
        carries them). A client sending plain HTTP through a proxy should not keep its
        connections alive: tinyproxy (1.11) closes them after each request without saying so
        (client.py closes each one)."""
        return self.headers() if target.lower().startswith("http://") else {}

    def __repr__(self) -> str:
        return f"Proxy({self.shown!r})"

    def secrets(self) -> tuple[str, ...]:
        """The password, to be cut out of anything written (untrusted.Redactor)."""
        if not self.password:
            return ()
        return (self.password, self.headers()["Proxy-Authorization"].partition(" ")[2])


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def _matches(entry: str, host: str, port: int | None) -> bool:
    """Whether one ``NO_PROXY`` entry covers ``host`` (lower case, no brackets) and ``port``."""
    if entry == "*":
        return True
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        pass
    want_host, want_port = _hostport(entry)
    if want_port is not None and want_port != port:
        return False
    want_host = want_host.removeprefix("*").lstrip(".")
    return bool(want_host) and (host == want_host or host.endswith("." + want_host))


def _link_local(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_link_local
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """The proxies of the environment, and the hosts they are not for (module docstring)."""

    http: Proxy | None = None
    https: Proxy | None = None
    no_proxy: tuple[str, ...] = ()
    exempt: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str], exempt: Iterable[str] = ()) -> ProxySettings:
        """Read the variables; ``exempt``: URLs whose hosts are always reached directly."""
        proxies: dict[str, Proxy | None] = {}
        for scheme in ("http", "https"):
            found = _first(env, f"{scheme}_proxy", f"{scheme.upper()}_PROXY")
            proxies[scheme] = Proxy.parse(found[1], found[0]) if found else None
        no_proxy = _first(env, "no_proxy", "NO_PROXY")
        entries = tuple(e.strip().lower() for e in (no_proxy[1] if no_proxy else "").split(",")
                        if e.strip())
        hosts = tuple(_hostport(urlsplit(url).netloc)[0] for url in exempt if url)
        return cls(proxies["http"], proxies["https"], entries, hosts)

    def for_url(self, url: str) -> Proxy | None:
        """The proxy for a request to ``url``, or None to go direct."""
        parts = urlsplit(url)
        proxy = self.https if parts.scheme == "https" else self.http
        if proxy is None:
            return None
        host, port = _hostport(parts.netloc)
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        if _link_local(host) or host in self.exempt:
            return None
        if any(_matches(entry, host, port) for entry in self.no_proxy):
            return None
        return proxy

    def secrets(self) -> tuple[str, ...]:
        """Every proxy password, for the Redactor."""
        return tuple(s for p in (self.http, self.https) if p is not None for s in p.secrets())
