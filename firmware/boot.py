"""Runs first on every start, also when mpremote soft-resets into its raw REPL.

So nothing here: the control loop starts from main.py, which the raw REPL skips,
leaving mpremote a board it can talk to.
"""
