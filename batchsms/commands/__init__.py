"""The CLI's commands, one module (or package) each: `run`, `validate`, `plan`, `tasks`, `report`.

A command wires stages together; it never imports another command. What two commands share
lives in a stage module (`plan.checked_lines`, `records.format_problems`, `config.RunConfig`,
`connection`). Their parsers are in `batchsms/cli.py`.
"""
