"""Runs first on every start, also when mpremote soft-resets into its raw REPL.

An ESP32 powers on at 160 MHz; the loop's budget is set at 240 MHz (MicroPython runs ~1.5x
faster there), so switch now, for the raw REPL (flashing, deploys) too. Nothing else: the
control loop starts from main.py, which the raw REPL skips, leaving mpremote a board it
can talk to.
"""

import machine

machine.freq(240000000)
