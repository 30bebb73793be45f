"""The virtual Gen0's ground truth, for scoring: each joint's limb angle beside its gear (pot side) angle,
keyed by the board clock that the firmware's telemetry stamps (`t_us`).

The firmware never sees any of it. The board (board.py) adds a sample at every ADC conversion, i.e. in
the firmware's sense stage, twice a tick, into a ring (RING samples: ~5 minutes at 200 Hz). A small Unix
socket, named in the simulator's registry note (`truth`), answers one question per connection: the
samples whose board ticks lie between two `ticks_us` values, of the latest boot that has them. The
evaluator (host/limb.py) asks it after each run, wherever the simulator runs (this process or a `host sim`).

Request: one JSON line {"from": ticks, "to": ticks} (µs, wrapping at 2**30 as ticks_us does).
Reply: one JSON object {"off_us": [...], "limb_deg": [[per joint] ...], "gear_deg": [...]}: off_us the
sample's ticks less `from`, ascending.
"""

import json
import math
import os
import socket
import tempfile
import threading
from pathlib import Path

import numpy as np

RING = 1 << 17
TICKS_MASK = (1 << 30) - 1  # ticks_us wraps here (protocol.TICKS_PERIOD)
MAX_REQUEST = 256


def serve(board, port):
    """Record the board's truth (board.truth_log) and answer for it on a socket named after the port: the server."""
    if board.truth_log is None:
        board.truth_log = TruthLog(len(board.plant.servos))
    return TruthServer(board.truth_log, Path(tempfile.gettempdir()) / f"polyniod-truth-{os.getpid()}-{Path(port).name}")


class TruthLog:
    """A ring of (board µs since boot, boot epoch, limb deg, gear deg per joint); add() allocates nothing."""

    def __init__(self, n_joints, size=RING):
        self.size = size
        self.key = np.zeros(size, np.int64)
        self.boot = np.zeros(size, np.int64)
        self.limb = np.zeros((size, n_joints))
        self.gear = np.zeros((size, n_joints))
        self.n = 0  # samples ever added
        self._lock = threading.Lock()

    def add(self, t_us, epoch, servos):
        """A sample at board time t_us (since this boot) of the plant's servos (plant.Servo)."""
        with self._lock:
            i = self.n % self.size
            self.key[i], self.boot[i] = t_us, epoch
            limb, gear = self.limb[i], self.gear[i]
            for j, s in enumerate(servos):
                limb[j] = math.degrees(s.sign * s.limb)
                gear[j] = math.degrees(s.gear)
            self.n += 1

    def between(self, lo, hi):
        """(off_us, limb, gear) of the latest boot's samples with ticks in lo..hi (wrapping), oldest first."""
        with self._lock:
            order = (np.arange(max(0, self.n - self.size), self.n) % self.size)
            key, boot, limb, gear = self.key[order], self.boot[order], self.limb[order], self.gear[order]
        off = (key - lo) & TICKS_MASK
        match = off <= ((hi - lo) & TICKS_MASK)
        if match.any():
            match &= boot == boot[np.flatnonzero(match)[-1]]
        return off[match], limb[match], gear[match]


class TruthServer:
    """Answers TruthLog.between() over a Unix socket at `path`, on a thread of its own, until close()."""

    def __init__(self, log, path):
        self.log, self.path = log, str(path)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(4)
        self._thread = threading.Thread(target=self._serve, name="gen0-truth", daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            with conn:
                try:
                    conn.settimeout(2.0)
                    ask = json.loads(conn.recv(MAX_REQUEST).split(b"\n")[0])
                    off, limb, gear = self.log.between(int(ask["from"]) & TICKS_MASK, int(ask["to"]) & TICKS_MASK)
                    reply = {"off_us": off.tolist(), "limb_deg": np.round(limb, 4).tolist(),
                             "gear_deg": np.round(gear, 4).tolist()}
                except (OSError, ValueError, KeyError, TypeError) as e:
                    reply = {"error": f"{type(e).__name__}: {e}"}
                try:
                    conn.sendall(json.dumps(reply).encode())
                except OSError:
                    pass

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(5)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def ask(path, lo, hi, timeout=10.0):
    """The reply of the TruthServer at `path` for ticks lo..hi: (off_us, limb, gear) arrays; OSError when
    it cannot be reached, ValueError when it answered with an error."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps({"from": int(lo), "to": int(hi)}).encode() + b"\n")
        chunks = []
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    reply = json.loads(b"".join(chunks))
    if "error" in reply:
        raise ValueError(reply["error"])
    return (np.asarray(reply["off_us"], np.int64), np.asarray(reply["limb_deg"], float).reshape(len(reply["off_us"]), -1),
            np.asarray(reply["gear_deg"], float).reshape(len(reply["off_us"]), -1))
