"""Journal: the outcome records a run writes, one per input line, and reading them back.

    outcomes.py  `Outcome` (the record), `OutcomeWriter` (buffered, flushed, disk full), the
                 journal lock, reading a journal (`iter_journal`)
    resume.py    which lines a journal says are done (`--resume`)
"""
