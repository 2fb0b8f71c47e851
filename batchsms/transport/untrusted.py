"""Wire safety: what the client does to every string and body it takes from a server.

Everything an answer carries (headers, error codes and messages, request ids, a redirect's
`Location`, the text of a parse error quoting the server's bytes) is untrusted
(docs/reference.md §5). It passes `safe_text` once, at the client edge, before it can reach an
outcome record, a log line or a terminal: text that is not valid Unicode (aiohttp turns a non-UTF-8
header byte into a lone surrogate, which `orjson` refuses to encode) becomes U+FFFD, control and
bidirectional-override characters are shown escaped (`\\x1b`) instead of acting on a terminal, and
the length is bounded with a marker saying how much was cut. Bodies are read up to `MAX_BODY` bytes
and no further.

Known secret values are cut out too (docs/reference.md §6: a server that echoes the request must not
get the token written to an outcome): a `Redactor`, built from what the credentials know, replaces
each one with `REDACTED` in every string taken from an answer, before it is bounded, and in a body
before it is parsed. See `Redactor` for which forms are looked for and why a value shorter than
`MIN_SECRET` is not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import orjson

# The largest answer the service sends is a ListTasks page of 200 tasks: 247 KB from the
# simulator, whose tasks carry every field of the SDK's response model (measured with
# `curl -s "$SIM/v3/tasks?limit=200" | wc -c` against `simulator --generate 300`). 4 MiB leaves
# a margin of 16x and keeps a run at the default concurrency (16) below 64 MiB of answers.
MAX_BODY = 4 * 1024 * 1024

MAX_MESSAGE = 1000  # error_msg: a service message is one sentence; a page of HTML is not
MAX_CODE = 64  # error_code: SMS.1234, APIGW.0308
MAX_REQUEST_ID = 128  # a request id is 32 hex digits
MAX_HEADER = 256  # Retry-After and other header values we keep
MAX_LOCATION = 300  # a redirect target, query string already removed

# C0 and C1 controls, DEL, and the bidirectional overrides and isolates that can make text read
# differently from what it is ("Trojan Source"): shown as escapes, never passed through.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def cut(text: str, limit: int) -> str:
    """`text` with at most `limit` characters, plus a marker saying how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (cut, {len(text) - limit} more)"


def safe_text(text: str, limit: int = MAX_MESSAGE) -> str:
    """Text from the network made fit for a record, a log and a terminal (see the docstring)."""
    if len(text) <= limit and text.isascii() and text.isprintable():
        return text  # the common case: a request id, a service message in English
    text = _SURROGATE.sub("\ufffd", text)
    text = _UNSAFE.sub(_escape, text)
    return cut(text, limit)


def safe_or_none(text: str | None, limit: int) -> str | None:
    return None if text is None else safe_text(text, limit)


def safe_location(location: str) -> str:
    """A redirect target without its query string and fragment (they may carry secrets)."""
    try:
        parts = urlsplit(location)
        bare = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    except ValueError:  # not even a URL: keep what comes before any query
        bare = location.split("?", 1)[0].split("#", 1)[0]
    return safe_text(bare, MAX_LOCATION)


def scrub(value: object) -> object:
    """Any JSON-able value with every string made safe (no length bound): the last resort of
    `Outcome.to_json`, so that one record can never stop a run."""
    if isinstance(value, str):
        return safe_text(value, len(value) * 6 + 1)
    if isinstance(value, dict):
        return {safe_text(str(k), 1000): scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    return safe_text(repr(value), MAX_MESSAGE)


REDACTED = "[redacted]"
"""What a known secret is replaced with: plain ASCII, so a JSON body stays JSON."""
_REDACTED_BYTES = REDACTED.encode()

MIN_SECRET = 8
"""The shortest value that is cut out. Real credentials are far longer (an AK has 20 characters,
an SK 40, a token thousands); a value of a few characters is also a piece of ordinary text
(`"ab"` would blank every word containing it), so cutting it would garble every message while
hiding nothing an observer could not guess."""

_ESCAPE = re.compile("%[0-9A-F]{2}")


def _forms(secret: str) -> tuple[set[str], set[str]]:
    """(the forms that can stand inside a JSON string, every form) of one secret.

    Inside a JSON string a secret is JSON-escaped: as orjson writes it (UTF-8 as is), as
    Python's `json` does (`\\uXXXX` for non-ASCII), either with `/` written `\\/` (PHP, some
    Java libraries). Anywhere it may also be percent-encoded (an echoed URL or query): with and
    without `/` kept, `+` for a space (its escapes in either case: `_pattern`). Text decoded from
    JSON (an `error_msg`) may still hold the escaped forms (a request dumped as JSON into a
    message), so text is searched for all of them, and for the secret itself.
    """
    escaped = {orjson.dumps(secret)[1:-1].decode(), json.dumps(secret)[1:-1]}
    escaped |= {e.replace("/", "\\/") for e in escaped}
    percent = {quote(secret, safe=""), quote(secret), quote_plus(secret),
               quote_plus(secret, safe="/")}
    in_json = escaped | percent
    return in_json, in_json | {secret}


_UNRESERVED_RUN = re.compile("[A-Za-z0-9_.~-]+")
"""Characters that neither percent-encoding nor JSON escaping changes."""
MIN_ANCHOR = 4


def _anchor(secret: str) -> str | None:
    """The longest run of `_UNRESERVED_RUN` in `secret`: a piece that every form of it holds
    verbatim, so a text without it holds no form of it (None: too short to tell)."""
    best = max(_UNRESERVED_RUN.findall(secret), key=len, default="")
    return best if len(best) >= MIN_ANCHOR else None


def _either_case(escape: re.Match[str]) -> str:
    return "%" + "".join(f"[{c}{c.lower()}]" if c.isalpha() else c for c in escape.group()[1:])


def _pattern(forms: Iterable[str]) -> str:
    """One regular expression for every form, longest first (where one form contains another,
    the whole of it is cut), a percent escape matching in either case (`%2F`, `%2f`)."""
    ordered = sorted(forms, key=lambda f: (-len(f), f))
    return "|".join(_ESCAPE.sub(_either_case, re.escape(f)) for f in ordered)


class Redactor:
    """Replaces known secret values with `REDACTED` in text and bodies taken from an answer.

    Built once per client from the credentials' `secrets()` (and any other value that must never
    be written: a proxy password); values shorter than `MIN_SECRET` are left alone (see there).
    `text` is for a string taken from an answer (a header, an error code or message, a
    `Location`), `body` for a JSON body before it is parsed: there only the forms a JSON string
    can hold are looked for, so the body stays well-formed. Never shows a secret in its `repr`.
    """

    __slots__ = ("_anchors", "_body", "_byte_anchors", "_count", "_text")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        in_json: set[str] = set()
        every: set[str] = set()
        values = {s for s in secrets if len(s) >= MIN_SECRET}
        for secret in values:
            json_forms, all_forms = _forms(secret)
            in_json |= json_forms
            every |= all_forms
        self._count = len(values)
        self._text = re.compile(_pattern(every)) if every else None
        self._body = re.compile(_pattern(in_json).encode()) if in_json else None
        # The quick test before the pattern runs (a regex of a dozen alternatives costs ~2 us on
        # a request id; a substring test ~50 ns): None when some secret has no anchor.
        anchors = {a for a in map(_anchor, values) if a is not None}
        every_anchored = all(_anchor(secret) is not None for secret in values)
        self._anchors = tuple(sorted(anchors)) if every_anchored else None
        self._byte_anchors = tuple(a.encode() for a in anchors) if every_anchored else None

    def __repr__(self) -> str:
        return f"Redactor({self._count} secrets)"

    def __bool__(self) -> bool:
        return self._text is not None

    def text(self, text: str) -> str:
        """`text` with every known secret, in any of its forms, replaced with `REDACTED`."""
        if self._text is None:
            return text
        if self._anchors is None:
            return self._text.sub(REDACTED, text)
        for anchor in self._anchors:  # a loop: `any(<generator>)` costs more than the tests
            if anchor in text:
                return self._text.sub(REDACTED, text)
        return text

    def body(self, data: bytes) -> bytes:
        """A JSON body with every known secret inside its strings replaced with `REDACTED`."""
        if self._body is None:
            return data
        if self._byte_anchors is None:
            return self._body.sub(_REDACTED_BYTES, data)
        for anchor in self._byte_anchors:
            if anchor in data:
                return self._body.sub(_REDACTED_BYTES, data)
        return data

    def safe(self, text: str, limit: int = MAX_MESSAGE) -> str:
        """`safe_text` of `text` with the secrets cut out first (a bound must not cut a secret
        in two, leaving half of it)."""
        return safe_text(self.text(text), limit)

    def safe_or_none(self, text: str | None, limit: int) -> str | None:
        return None if text is None else safe_text(self.text(text), limit)


NO_SECRETS = Redactor()
"""The redactor of a client without credentials (a rehearsal): it changes nothing."""
