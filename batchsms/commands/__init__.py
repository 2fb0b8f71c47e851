"""The commands of the CLI, one module each (`plan` so far; the others move here later)."""
