"""`report --html`'s "what to do next" for the lines not done, by `error_code`: data, one line a
code (the codes are docs/reference.md §3's), looked up by `advice`.

Service codes (`SMS.xxxx`, `APIGW.xxxx`) are too many to list: they get the advice of their
HTTP class when the record has one, else the general one. Every piece of advice ends in a
command that is safe to run: `report --failed-to` and `run --resume` never redo a line done.
"""

from __future__ import annotations

_RESUME = ("`batchsms run INPUT --resume --out OUTCOMES` (the same --set/--patch) re-runs "
           "what is not done; the lines done are not sent again.")
_READ = "`batchsms plan` on one line reads its task with the same endpoint and credentials"

_BY_CODE = {
    "validation": "Fix the line (`batchsms validate INPUT` lists every problem), then re-run "
                  "it: `report --input INPUT --failed-to FILE` writes the lines not done.",
    "timeout": "No answer in time: the service may have applied it (maybe_applied); "
               f"{_READ}. Raise --timeout if answers are slow. {_RESUME}",
    "connection": "The connection failed (refused, reset or closed without an answer; a write "
                  "may have been applied). If every line failed so, check the endpoint, the "
                  f"proxy and DNS ({_READ}); else it was passing trouble. {_RESUME}",
    "aborted": "Never sent: the run stopped early (its `run.aborted` log event says why: too "
               f"many failures, or credentials rejected). Fix the cause. {_RESUME}",
    "deadline": f"Never sent: --deadline passed. {_RESUME}",
    "interrupted": f"Never sent: the run was interrupted (Ctrl-C, SIGTERM). {_RESUME}",
    "conflict": "The task was not as the line's `expect` said: someone else changed it. "
                "Look at it (`batchsms plan`) before sending the line again.",
    "verify_mismatch": "Written, but reading it back showed other values: look at the task "
                       "(`batchsms plan`); the service may have refused part of the body.",
    "bad_answer": "The service answered 2xx with something that is not a task: a proxy or a "
                  f"wrong --endpoint? {_READ}.",
    "http_401": f"Credentials rejected: check the AK/SK or the token; {_READ}.",
    "http_403": "Not allowed: check the account's permissions for SMS UpdateTask.",
    "http_404": "No such task: check the task id (`batchsms tasks` lists them).",
    "http_429": f"Throttled to the end: lower --rate or --concurrency. {_RESUME}",
}

_BY_CLASS = {
    3: f"A redirect (not followed): is --endpoint right? {_READ}.",
    4: "The service refused the request: read the message, fix the line or the task, then "
       "re-run the line.",
    5: f"The service failed, often for a while only. {_RESUME}",
}

GENERAL = f"Read the example messages. {_RESUME}"


def advice(code: str | None, http_status: object = None) -> str:
    """What to do next about lines not done with `code` (their last HTTP status, if any)."""
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code]
    if code is not None and code.startswith("http_") and code[5:].isdigit():
        http_status = int(code[5:])
    if type(http_status) is int and http_status // 100 in _BY_CLASS:
        return _BY_CLASS[http_status // 100]
    return GENERAL
