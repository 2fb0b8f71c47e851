"""Wire safety: what the client does to every string and body it takes from a server.

Everything an answer carries (headers, error codes and messages, request ids, a redirect's
`Location`, the text of a parse error quoting the server's bytes) is untrusted (CONTRACT §5). It
passes `safe_text` once, at the client edge, before it can reach an outcome record, a log line or
a terminal: text that is not valid Unicode (aiohttp turns a non-UTF-8 header byte into a lone
surrogate, which `orjson` refuses to encode) becomes U+FFFD, control and bidirectional-override
characters are shown escaped (`\\x1b`) instead of acting on a terminal, and the length is bounded
with a marker saying how much was cut. Bodies are read up to `MAX_BODY` bytes and no further.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

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
