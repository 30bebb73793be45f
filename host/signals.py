"""Ctrl-C and SIGTERM as a request to stop: long work (a recording, a replay, an evaluation) ends at a
clean point and keeps what it has, instead of dying mid-write."""

import signal
import threading


def with_stop_signals(work):
    """work(stop): Ctrl-C and SIGTERM set `stop`, so the session ends cleanly instead of mid-write."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return work(stop)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
