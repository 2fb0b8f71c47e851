"""The project id of a region, looked up in IAM as the SDK does (KeystoneListProjects).

Place in the flow: the run's set-up calls :func:`lookup_project_id` once when AK/SK credentials
carry no project id and a region is known (docs/reference.md §6); the id found is then sent
as ``X-Project-Id`` on every request (providers.py's ``ProviderAuthenticator``). The request
is the one ``huaweicloudsdkcore.auth.internal.IamHelper.get_keystone_list_projects_request``
builds: a signed ``GET {IAM}/v3/projects?name={region}``, ``{IAM}`` being
``HUAWEICLOUD_SDK_IAM_ENDPOINT`` or ``https://iam.{region}.myhuaweicloud.com``; the answer's
``projects[0].id`` is the project.

What can go wrong, each once and clearly (aiohttp's errors translated here):

- no project of that name: :class:`~batchsms.errors.UsageError` (exit 2), naming the region;
- IAM rejects the credentials (401/403): :class:`~batchsms.errors.AbortedError` (exit 3);
- IAM unreachable, or any other answer: :class:`~batchsms.errors.CredentialSourceError`
  (exit 2) naming IAM and what it answered, the credentials' secrets cut out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
from yarl import URL

from batchsms import __version__
from batchsms.errors import AbortedError, CredentialSourceError, UsageError
from batchsms.transport.proxy import Proxy
from batchsms.transport.signing import Authenticator
from batchsms.transport.untrusted import MAX_MESSAGE, Redactor

__all__ = ["IAM_ENDPOINT_ENV", "PROJECTS_PATH", "iam_endpoint", "lookup_project_id"]

IAM_ENDPOINT_ENV = "HUAWEICLOUD_SDK_IAM_ENDPOINT"
PROJECTS_PATH = "/v3/projects"
MAX_PROJECTS_ANSWER = 1024 * 1024
"""A list of projects by name is one or none; a megabyte is already a wrong answer."""
LOOKUP_TIMEOUT = 30.0


def iam_endpoint(env: Mapping[str, str], region: str) -> str:
    """Where IAM is for ``region``: ``HUAWEICLOUD_SDK_IAM_ENDPOINT`` or the region's own."""
    explicit = env.get(IAM_ENDPOINT_ENV, "").strip()
    return explicit.rstrip("/") if explicit else f"https://iam.{region}.myhuaweicloud.com"


async def lookup_project_id(
    session: aiohttp.ClientSession,
    iam: str,
    region: str,
    auth: Authenticator,
    *,
    now: datetime | None = None,
    proxy: Proxy | None = None,
) -> str:
    """The id of the project named ``region`` (module docstring). ``now`` is the signing time
    (a clock-skew-corrected one, clock.py); ``proxy`` as proxy.py decides for ``iam``."""
    parts = urlsplit(iam)
    base = parts.path.rstrip("/")
    query = [("name", region)]
    encoded = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in query)
    path = base + PROJECTS_PATH
    headers = auth.headers_for("GET", parts.netloc, path, query,
                               {"User-Agent": f"batchsms/{__version__}"}, b"",
                               now or datetime.now(UTC))
    url = URL(f"{parts.scheme}://{parts.netloc}{path}?{encoded}", encoded=True)
    if proxy is not None:  # after signing: the proxy's header is not the service's business
        headers.update(proxy.request_headers(iam))
    name = f"IAM ({iam})"
    redact = Redactor(auth.secrets() + (proxy.secrets() if proxy else ()))
    try:
        async with session.get(url, headers=headers, allow_redirects=False,
                               proxy=proxy.url if proxy else None,
                               proxy_headers=proxy.headers() if proxy else None,
                               timeout=aiohttp.ClientTimeout(total=LOOKUP_TIMEOUT)) as response:
            status, body = response.status, await response.content.read(MAX_PROJECTS_ANSWER)
    except TimeoutError:
        raise CredentialSourceError(
            f"{name} did not answer the project lookup within {LOOKUP_TIMEOUT:g} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise CredentialSourceError(
            f"{name} could not be reached for the project lookup ({type(exc).__name__})"
        ) from None
    if status in (401, 403):
        raise AbortedError(f"{name} rejected the credentials (HTTP {status}) when looking up "
                           f"the project of {region}: {_quote(body, redact)}")
    if status != 200:
        raise CredentialSourceError(
            f"{name} answered HTTP {status} to the project lookup: {_quote(body, redact)}")
    project = _first_project_id(body)
    if project is None:
        raise UsageError(
            f"{name} knows no project named {region!r} for these credentials: check --region, "
            "or set HUAWEICLOUD_SDK_PROJECT_ID")
    return project


def _first_project_id(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    projects = data.get("projects") if isinstance(data, dict) else None
    if not isinstance(projects, list) or not projects or not isinstance(projects[0], dict):
        return None
    project = projects[0].get("id")
    return project if isinstance(project, str) and project.strip() else None


def _quote(body: bytes, redact: Redactor) -> str:
    text = redact.body(body).decode("utf-8", "replace").strip()
    return redact.safe(text, MAX_MESSAGE // 5) or "(no body)"
