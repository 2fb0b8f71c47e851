"""The send engine: pace, retry budget, outage guard, admission, ordering, attempts.

    feedback.py  what one try told the controllers (`Answer`)
    pace.py      every try passes the token bucket; its rate follows the service's answers
    budget.py    retries as a share of traffic: deferred when over, never dropped
    outage.py    "most recent tries fail": probe instead of pushing, give up after a bound
"""
