"""Journal: the outcome records a run writes, one per input line, and reading them back.

    outcomes.py  `Outcome` (the record), `OutcomeWriter` (buffered, flushed, disk full), the
                 journal lock, reading a journal (`iter_journal`)
    records.py   the records made from what happened to a line: invalid, resumed, not sent,
                 sent (from the engine's result); the one place a line's end is worded
    resume.py    which lines a journal says are done (`--resume`)
"""
