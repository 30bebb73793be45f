"""`host monitor`: live telemetry in the terminal -- values, rates, link health -- until Ctrl-C."""

import json
import sys
import time

from host.link.client import Link


def add_parser(sub):
    p = sub.add_parser("monitor", help="show live telemetry (values and rates) until Ctrl-C")
    p.add_argument("--port", required=True, help="serial port of the board (see `host ports`)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between screen updates")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--baud", type=int, help="link baud rate for the utilisation figure (default: the robot description's)")
    p.add_argument("--json", action="store_true", help="print one JSON object per interval instead of a table")
    p.set_defaults(run=run)


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


def run(args):
    with Link(args.port) as link:
        hello = link.connect()
        try:
            stats = watch(link, hello, args.duration, args.interval, args.json, args.baud)
        except KeyboardInterrupt:  # the normal way to stop watching
            return 0
    return 0 if stats is not None else 1


def watch(link, hello, duration=None, interval=0.5, as_json=False, baud=None, quiet=False):
    """Show telemetry until `duration` s pass or Ctrl-C; return the last interval's figures (None if the link died)."""
    baud = baud or hello.get("robot", {}).get("link", {}).get("baud") or 115200
    joints = [j["name"] for j in hello.get("robot", {}).get("joints", [])]
    rates = Rates(link)
    start = time.monotonic()
    latest, stats = {}, {}
    next_show = start + interval
    shown_lines = 0
    while True:
        item = link.next_telemetry(timeout=0.1)
        if item:
            _, seq, t_us, latest = item
            rates.add(t_us)
        if link.error:
            print(f"error: {link.error}", file=sys.stderr)
            return None
        now = time.monotonic()
        if now < next_show:
            continue
        next_show = now + interval
        stats = rates.take(baud)
        stats.update(drops=link.seq_gaps, crc_errors=link.decoder.crc_errors, resets=link.resets, elapsed_s=now - start)
        if quiet:
            pass
        elif as_json:
            print(json.dumps({**stats, "latest": latest}), flush=True)
        else:
            shown_lines = _draw(hello, joints, stats, latest, baud, shown_lines)
        while not link.logs.empty():
            _, level, text = link.logs.get_nowait()
            if not (as_json or quiet):
                print(f"[device] {text}")
                shown_lines = 0
        if duration and now - start >= duration:
            return {**stats, "latest": latest}


def _draw(hello, joints, stats, latest, baud, shown_lines):
    util = stats["link_utilisation"]
    lines = [
        f"Gen0 fw {hello.get('fw')}  board {hello.get('board_id')}  {len(latest)} fields",
        f"frames/s {stats['frames_per_s']:7.1f}   loop {stats['loop_hz']:7.1f} Hz   link {util * 100 if util is not None else 0:5.1f}% of {baud} baud"
        f"   drops {stats['drops']}   crc errors {stats['crc_errors']}   resets {stats['resets']}",
    ]
    used = set()
    for j in joints:
        fields = {k[len(j) + 1:]: v for k, v in latest.items() if k.startswith(j + "_")}
        used.update(j + "_" + k for k in fields)
        lines.append(f"  {j:<10} " + "  ".join(f"{k} {_fmt(v):>8}" for k, v in fields.items()))
    rest = {k: v for k, v in latest.items() if k not in used}
    lines.append("  " + "  ".join(f"{k} {_fmt(v)}" for k, v in rest.items()))
    if sys.stdout.isatty() and shown_lines:
        sys.stdout.write(f"\x1b[{shown_lines}F\x1b[J")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    return len(lines)


def _fmt(v):
    return f"{v:.2f}" if isinstance(v, float) and not v.is_integer() else f"{int(v)}"
