"""Lines: what an input line is, and what its body means, before anything is sent.

    reader.py    JSONL (or CSV) -> numbered `Line`s or `InvalidLine`s with every problem
    schema.py    the UpdateTask body schema (Tables 3-12 of the reference) as data, one walker
    speed_rules.py  UpdateSpeed's rules (§11) as data on the same walker, their comparison, and
                 the `--rules` compact syntax
    bodies.py    --patch/--set merge, the canonical bytes to send and their hash (`Planned`)
    expect.py    a line's `expect`: what the task must hold before it is written
    diff.py      a body against a task's view: what would change, what cannot be compared
    readable.py  where ShowTask shows each field of a body (the mapping diff reads)
    repeats.py   task ids on more than one line, counted in bounded memory (`validate`'s notice)
"""
