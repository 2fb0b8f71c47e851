"""The send engine: pace, retry budget, outage guard, admission, ordering, attempts.

    bucket.py    the token bucket (`RateLimiter`) and the `Clock`/`Sleep` types
    retry.py     which answers are retried and the backoff before each retry
    numbers.py   the numeric settings' checks (one `UsageError` naming the option)
    sender.py    one line's tries: admission, bucket, request, answer -> `Result`
    pipeline.py  reads lines, sends them with per-task order, writes outcomes
    build.py     a `Sender` from `EngineSettings`

    feedback.py  what one try told the controllers (`Answer`)
    pace.py      every try passes the token bucket; its rate follows the service's answers
    budget.py    retries as a share of traffic: deferred when over, never dropped
    outage.py    "most recent tries fail": probe instead of pushing, give up after a bound
"""
