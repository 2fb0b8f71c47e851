"""Changes: a write seen against the task it changes -- read before, compare, verify, undo.

    readback.py     ShowTask -> the view a body is compared with (`Read`)
    guarded_put.py  the PUT with --skip-unchanged, --verify and `expect` around it
    preview.py      `plan`: what `run` would change, line by line, never writing
    undo.py         the undo file: one line per task restoring what the runs changed
    undo_log.py     the side log undo is built from (values captured before each write)
"""
