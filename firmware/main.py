"""Runs after boot.py on power-up and soft reset (not in mpremote's raw REPL): start the loop."""

import loop

loop.run()
