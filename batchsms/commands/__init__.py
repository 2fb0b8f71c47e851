"""The CLI's commands, one module (or package) each: `run`, `validate`, `plan`, `tasks`, `report`.

A command wires stages together; it never imports another command. What two commands share
lives in a stage package (`lines.bodies.checked_lines`, `lines.reader.format_problems`,
`transport.endpoint`) or beside the commands (`config.RunConfig`, `outputs`, `logs`).
Their parsers are in `batchsms/cli.py`.
"""
