"""Timing inside the MicroPython VM, shared by the benchmarks that run code there."""

import time


def per_call(f, reps=5000):
    """µs per call of f: best of 5 runs, since other processes only ever add time."""
    best = 1e9
    for _ in range(5):
        t = time.ticks_us()
        for i in range(reps):
            f()
        best = min(best, time.ticks_diff(time.ticks_us(), t) / reps)
    return best
