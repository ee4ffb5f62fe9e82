"""One module per `sfdet` sub-command.

Each module defines `add_arguments(parser)` and `run(args) -> int` (the exit
code). They are imported lazily, so `sfdet eval` never pays for importing the
detector, and a broken optional dependency only affects its own command.
"""
