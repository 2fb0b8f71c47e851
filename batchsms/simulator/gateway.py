"""The API gateway's signature check, as the simulator applies it to every request it receives.

Used only by the simulator (access.py): it recomputes the canonical request of signing.py from
what was received, so a request signed by our client or by the official SDK verifies alike.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from batchsms.transport.signing import (
    ALGORITHM,
    CONTENT_SHA256_HEADER,
    DATE_FORMAT,
    canonical_request,
    naive_utc,
    payload_hash,
    string_to_sign,
)

__all__ = ["verify_signature"]


def verify_signature(
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    expected_ak: str,
    sk: str,
    now: datetime,
    max_skew: timedelta = timedelta(minutes=15),
) -> str | None:
    """Check a received request the way the API gateway does; None if valid, else a short reason.

    ``raw_path`` is the path as received (still percent-encoded; a ``?query`` tail is ignored),
    ``query`` the decoded pairs, ``headers`` as received (looked up case-insensitively, first value
    wins). ``Host`` and ``X-Sdk-Date`` must be among the signed headers, so that neither the target
    nor the time can be changed without breaking the signature. Reasons never quote a secret.
    """
    received: dict[str, str] = {}
    for key, value in headers.items():
        received.setdefault(key.lower(), value)

    authorization = received.get("authorization")
    if authorization is None:
        return "missing Authorization header"
    scheme, _, params = authorization.strip().partition(" ")
    if scheme != ALGORITHM:
        return f"unsupported authorization scheme (want {ALGORITHM})"
    fields: dict[str, str] = {}
    for part in params.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value.strip()
    access, signed, signature = (fields.get(k) for k in ("Access", "SignedHeaders", "Signature"))
    if not access or not signed or not signature:
        return "malformed Authorization header"
    if not hmac.compare_digest(access.encode(), expected_ak.encode()):
        return "unknown access key"

    date = received.get("x-sdk-date")
    if date is None:
        return "missing X-Sdk-Date header"
    try:
        sent_at = datetime.strptime(date.strip(), DATE_FORMAT)
    except ValueError:
        return "malformed X-Sdk-Date header"
    if abs(naive_utc(now) - sent_at) > max_skew:
        return f"X-Sdk-Date is more than {int(max_skew.total_seconds())} s from the server's clock"

    names = signed.split(";")
    if "host" not in names or "x-sdk-date" not in names:
        return "Host and X-Sdk-Date must be signed"
    values: dict[str, str] = {}
    for name in names:
        if name not in received:
            return f"signed header {name!r} is missing"
        values[name] = received[name].strip()

    # Honour X-Sdk-Content-Sha256 only when signed: unsigned, it would let anyone swap the body.
    content_sha256 = values.get(CONTENT_SHA256_HEADER.lower())
    path = raw_path.partition("?")[0]
    canonical = canonical_request(
        method, path, query, names, values, payload_hash(body, content_sha256)
    )
    to_sign = string_to_sign(sent_at.strftime(DATE_FORMAT), canonical)
    expected = hmac.new(sk.encode(), to_sign, hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest().encode(), signature.encode()):
        return "signature does not match"
    return None
