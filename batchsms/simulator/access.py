"""Who may call the simulator: the credentials it expects, checked as the API gateway does.

docs/reference.md §8: ``BATCHSMS_SIMULATOR_AK`` + ``BATCHSMS_SIMULATOR_SK`` (an ``SDK-HMAC-SHA256``
signature is recomputed from the received request by :func:`gateway.verify_signature`,
``X-Sdk-Date`` at most 15 minutes off) and/or ``BATCHSMS_SIMULATOR_TOKEN`` (``X-Auth-Token``,
compared in constant time). With none configured nothing is checked. Otherwise a request passes
with *either* configured credential, and anything else gets a reason, which app.py answers as
401 ``APIG.0301``. Reasons never quote a secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from batchsms.simulator.gateway import verify_signature
from batchsms.simulator.metadata import MetadataState
from batchsms.transport.signing import ALGORITHM

__all__ = ["AK_ENV", "SIMULATOR_TOKEN_ENV", "SK_ENV", "ExpectedCredentials"]

AK_ENV = "BATCHSMS_SIMULATOR_AK"
SK_ENV = "BATCHSMS_SIMULATOR_SK"
SIMULATOR_TOKEN_ENV = "BATCHSMS_SIMULATOR_TOKEN"  # noqa: S105 - a variable's name, not a secret
MAX_SKEW = timedelta(minutes=15)


@dataclass(frozen=True, slots=True, repr=False)
class ExpectedCredentials:
    """The key pair and/or token a request must carry; all None = no check."""

    ak: str | None = None
    sk: str | None = None
    token: str | None = None
    temporary: MetadataState | None = None
    """Also accept the temporary credentials these rehearsal endpoints issued (metadata.py)."""

    def __post_init__(self) -> None:
        if (self.ak is None) != (self.sk is None):
            raise ValueError(f"set both {AK_ENV} and {SK_ENV}, or neither")

    def __repr__(self) -> str:
        return (f"ExpectedCredentials(aksk={'***' if self.ak else None}, "
                f"token={'***' if self.token else None})")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ExpectedCredentials:
        """Read the ``BATCHSMS_SIMULATOR_*`` variables; empty values count as unset."""
        ak = env.get(AK_ENV, "").strip() or None
        sk = env.get(SK_ENV, "").strip() or None
        token = env.get(SIMULATOR_TOKEN_ENV, "").strip() or None
        return cls(ak=ak, sk=sk, token=token)

    @property
    def configured(self) -> bool:
        return self.ak is not None or self.token is not None or self.temporary is not None

    def check(self, method: str, raw_path: str, query: Sequence[tuple[str, str]],
              headers: Mapping[str, str], body: bytes, now: datetime) -> str | None:
        """None when the request may pass, else why not (for ``error_msg``)."""
        if not self.configured:
            return None
        authorization = headers.get("Authorization")
        if authorization is not None and authorization.lstrip().startswith(ALGORITHM):
            if self.temporary is not None and self.temporary.issued_to(authorization):
                return self.temporary.check_signature(method, raw_path, query, headers, body)
            if self.ak is None or self.sk is None:
                return "AK/SK signatures are not accepted here, send X-Auth-Token"
            return verify_signature(method, raw_path, query, headers, body, self.ak, self.sk,
                                    now, MAX_SKEW)
        token = headers.get("X-Auth-Token")
        if token is not None:
            if self.token is None:
                return "tokens are not accepted here, sign the request with AK/SK"
            if hmac.compare_digest(token.encode(), self.token.encode()):
                return None
            return "the X-Auth-Token is not valid"
        if authorization is not None:
            return f"unsupported authorization scheme (want {ALGORITHM})"
        return f"no credentials: send X-Auth-Token or an {ALGORITHM} Authorization header"
