"""Live figures of a running board: frames/s, loop rate and link load, where a tick's time goes
(the firmware's `stages`), and whose µs those are (a real board's, or a virtual Gen0's CPU model).

`host monitor` shows them; `host bench` reports them.
"""

import json
import re
import time

from polyniod_firmware import protocol as P

from host.link.client import CommandError
from host.sim import registry

STAGES_EVERY_S = 2.0  # `stages` costs the board a few ms of one tick: asked every few seconds, not every interval
STAGES_ACK_S = 2.0  # an unanswered `stages` (a dropped line) is asked again after this


class Rates:
    """Frames/s, device loop rate and link load over the last interval."""

    def __init__(self, link):
        self.link = link
        self.mark = (time.monotonic(), link.rx_bytes, link.frames)
        self.first_t_us = self.last_t_us = None
        self.count = 0

    def add(self, t_us):
        if self.first_t_us is None:
            self.first_t_us = t_us
        self.last_t_us = t_us
        self.count += 1

    def take(self, baud):
        now, rx, frames = time.monotonic(), self.link.rx_bytes, self.link.frames
        t0, rx0, frames0 = self.mark
        dt = max(now - t0, 1e-6)
        span = ((self.last_t_us - self.first_t_us) & 0x3FFFFFFF) if self.count > 1 else 0
        out = {
            "frames_per_s": (frames - frames0) / dt,
            "loop_hz": (self.count - 1) / (span / 1e6) if span else 0.0,
            "link_bytes_per_s": (rx - rx0) / dt,
            "link_utilisation": (rx - rx0) * 10 / dt / baud if baud else None,
        }
        self.mark = (now, rx, frames)
        self.first_t_us = self.last_t_us = None
        self.count = 0
        return out


def board_clock(port):
    """What the board's µs figures are: {"cpu": its CPU model in words, "us": whose µs they are (a phrase
    after "the µs are"), "us_tag": the same in a few words}. A virtual Gen0 (found by its registry note,
    which names its CPU model: `cpu_model`, `cpu`) runs at an ESP32's pace unless started with
    --cpu host; anything else is a real board, whose µs are measured on it."""
    note = registry.find(port)
    if note is None:
        return {"cpu": "the board itself (measured µs)", "us": "measured on the board", "us_tag": "measured on the board"}
    model, cpu = note.get("cpu_model"), note.get("cpu")
    if not (model or cpu):
        return {"cpu": "virtual Gen0 (its registry note names no CPU model)",
                "us": "a virtual Gen0's, its CPU model unknown", "us_tag": "virtual Gen0, CPU model unknown"}
    if model == "host" or (not model and cpu.startswith("host")):
        return {"cpu": cpu or model, "us": "the VM's own, at this host's speed (no CPU model: not an ESP32's)",
                "us_tag": "VM's own speed, not an ESP32's"}
    factor = re.search(r"\bx([0-9.]+)", model or cpu)
    if factor and float(factor.group(1)) == 0:
        return {"cpu": cpu or model, "us": "a virtual Gen0's with CPU time free (--cpu-factor 0): "
                                          "modeled call costs and sleeps only", "us_tag": "virtual Gen0, CPU time free"}
    return {"cpu": cpu or model, "us": "an ESP32's: a virtual Gen0's board clock, the VM's work billed at the CPU model's factor",
            "us_tag": "ESP32 us, virtual Gen0"}


def stage_figures(ack):
    """A `stages` ack as {"ticks", "tx_waits", "stages": {name: {"mean_us", "max_us"}}} (the last name is "tick";
    tx_waits: the TX queue's overflows since boot, each one a tick that waited on the UART)."""
    return {"ticks": ack["ticks"], "tx_waits": ack.get("tx_waits"),
            "stages": {name: {"mean_us": mean, "max_us": longest}
                       for name, mean, longest in zip(ack["stages"], ack["mean_us"], ack["max_us"])}}


def read_stages(link, timeout=0.5):
    """The board's per-stage times since its last `stages` (which starts them again); None from a
    firmware that does not know `stages`."""
    try:
        return stage_figures(link.request_json("stages", timeout=timeout))
    except CommandError as e:
        if e.code == P.E_UNKNOWN:
            return None
        raise


class StagePoller:
    """`stages` every `every` s, sent without waiting and its ack taken when it has come, so the screen
    never waits on it. The first answer (times since whoever asked last, or since boot) is dropped;
    each `stages` is handled in a tick of the next figures' window, so listen's max holds it.
    latest: the last figures, None until the first; a firmware without `stages` (E_UNKNOWN) is
    asked no more, and any other refusal just leaves latest as it was."""

    def __init__(self, link, every=STAGES_EVERY_S):
        self.link, self.every = link, every
        self.latest = None
        self.known = True  # False once the firmware answered E_UNKNOWN
        self.seq = self.sent_at = None
        self.answers = 0
        self.next_at = time.monotonic()

    def poll(self, now):
        if not self.known:
            return self.latest
        if self.seq is not None:
            ack = self.link.take_ack(self.seq)
            if ack is None and now - self.sent_at < STAGES_ACK_S:
                return self.latest
            self.seq = None
            if ack is not None:
                self._answer(*ack)
        if self.known and now >= self.next_at:
            self.seq, self.sent_at, self.next_at = self.link.send("stages"), now, now + self.every
        return self.latest

    def _answer(self, code, data):
        if code == P.E_UNKNOWN:
            self.known = False
        elif code == P.E_OK:
            self.answers += 1
            if self.answers > 1:
                try:
                    self.latest = stage_figures(json.loads(data))
                except (ValueError, KeyError, TypeError):
                    pass


def stages_line(figures, clock=None):
    """`stages mean/max us: sense 1054/7058  decide 10/603 ... tick 1763/15551  (409 ticks, ESP32 us, virtual Gen0)`."""
    parts = "  ".join(f"{name} {s['mean_us']}/{s['max_us']}" for name, s in figures["stages"].items())
    tag = f", {clock['us_tag']}" if clock else ""
    return f"stages mean/max us: {parts}  ({figures['ticks']} ticks{tag})"
