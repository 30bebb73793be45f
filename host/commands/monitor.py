"""`host monitor`: live telemetry in the terminal -- values, rates, link health, where a tick's time
goes (per stage, from the firmware's `stages`) -- until Ctrl-C. With --foxglove the same telemetry is
served to Foxglove as it comes (host/live.py); --record keeps what was seen as a session, as `host collect`
would have, so what was served can be checked against it."""

import json
import sys
import time

import contextlib

from host.commands import add_sessions_dir, baud as check_baud, seconds
from host.commands.ports import add_port, board_port
from host.errors import UserError
from host.link.client import Link
from host.watch import Rates, StagePoller, board_clock, stages_line

MAX_INTERVAL_S = 3600.0


def add_parser(sub):
    p = sub.add_parser("monitor", help="show live telemetry (values and rates) until Ctrl-C")
    add_port(p)
    p.add_argument("--interval", type=float, default=0.5, metavar="S",
                   help=f"seconds between screen updates (at most {MAX_INTERVAL_S:g})")
    p.add_argument("--duration", type=float, metavar="S", help="stop after this many seconds (default: at Ctrl-C)")
    p.add_argument("--baud", type=int, help="link baud rate for the utilisation figure (default: the robot description's)")
    p.add_argument("--json", action="store_true", help="print one JSON object per interval instead of a table")
    p.add_argument("--foxglove", action="store_true",
                   help="also serve the telemetry live to Foxglove (WebSocket; the channels of an MCAP export)")
    p.add_argument("--listen", metavar="ADDR:PORT",
                   help="where --foxglove serves (default 127.0.0.1:8765, this machine only; 0.0.0.0:PORT for all)")
    p.add_argument("--record", metavar="NAME", help="also record what is seen as session NAME (as `host collect` does; "
                                                    "the servos are stopped at the end)")
    add_sessions_dir(p, role=" for --record")
    p.set_defaults(run=run)


def run(args):
    check_arguments(args)
    listen = _listen(args)
    port = board_port(args.port)
    with contextlib.ExitStack() as stack:
        live = None
        if listen:  # first: an address in use is said before the board is touched
            from host.live import FoxgloveLive

            live = stack.enter_context(FoxgloveLive(*listen))
            print(f"serving Foxglove on {live.url} (open a Foxglove WebSocket connection there)", file=sys.stderr)
        if args.record:
            from host.collect import Recorder

            rec = stack.enter_context(Recorder(port, args.out, args.record, {"program": {"name": "monitor", "params": {},
                                                                                          "seed": None}}, progress=False))
            hello, link = rec.start(), rec.link
        else:
            link = stack.enter_context(Link(port))
            hello = link.connect()
        try:
            stats = watch(link, hello, args.duration, args.interval, args.json, args.baud, clock=board_clock(port),
                          live=live)
        except KeyboardInterrupt:  # the normal way to stop watching
            return 0
    return 0 if stats is not None else 1


def _listen(args):
    """--foxglove's (address, port), or None; checked before the port is opened."""
    if not args.foxglove:
        if args.listen:
            raise UserError("--listen says where --foxglove serves: add --foxglove")
        return None
    from host.live import DEFAULT_PORT, parse_listen

    return parse_listen(f"127.0.0.1:{DEFAULT_PORT}" if args.listen is None else args.listen)


def check_arguments(args):
    """Before the port is opened: a screen update that comes, and a --duration that ends."""
    seconds("--interval", args.interval, high=MAX_INTERVAL_S, hint=" between screen updates")
    seconds("--duration", args.duration, hint=" (leave --duration out to watch until Ctrl-C)")
    check_baud(args.baud)


def watch(link, hello, duration=None, interval=0.5, as_json=False, baud=None, quiet=False, clock=None, live=None):
    """Show telemetry until `duration` s pass or Ctrl-C; return the last interval's figures (None if the link died).

    "stages": the board's per-stage mean/max µs (StagePoller; None until the first figures, and for a
    firmware without `stages`); `clock` (board_clock) says on screen what those µs are; `live`
    (host.live.FoxgloveLive) gets every telemetry and log frame as it comes. "fallback_pct": the share of the
    interval's frames whose `fallback` flag is up (a track model outside its learned region; None for a
    firmware without the flag)."""
    baud = baud or hello.baud
    joints = hello.joints
    rates = Rates(link)
    stages = StagePoller(link)
    start = time.monotonic()
    latest, stats = {}, {}
    fallback = hello.flag("fallback") if "fallback" in hello.flags else 0  # track: the model out of its region
    frames = flagged = 0
    next_show = start + interval
    shown_lines = 0
    while True:
        item = link.next_telemetry(timeout=0.1)
        if item:
            _, seq, t_us, latest = item
            rates.add(t_us)
            frames += 1
            flagged += bool(int(latest.get("flags", 0)) & fallback)
            if live:
                live.add_telemetry(link, item)
        if link.error:
            print(f"error: {link.error}", file=sys.stderr)
            return None
        now = time.monotonic()
        stage_times = stages.poll(now)
        if now < next_show:
            continue
        next_show = now + interval
        stats = rates.take(baud)
        stats.update(drops=link.seq_gaps, crc_errors=link.decoder.crc_errors, resets=link.resets, elapsed_s=now - start,
                     stages=stage_times)
        stats["fallback_pct"] = round(100 * flagged / frames, 1) if fallback and frames else None
        frames = flagged = 0
        if quiet:
            pass
        elif as_json:
            print(json.dumps({**stats, "latest": latest}), flush=True)
        else:
            shown_lines = _draw(hello, joints, stats, latest, baud, shown_lines, clock)
        while not link.logs.empty():
            host_time, level, text = link.logs.get_nowait()
            if live:
                live.add_log(host_time, level, text)
            if not (as_json or quiet):
                print(f"[device] {text}")
                shown_lines = 0
        if duration and now - start >= duration:
            return {**stats, "latest": latest}


def _draw(hello, joints, stats, latest, baud, shown_lines, clock=None):
    util = stats["link_utilisation"]
    lines = [
        f"Gen0 fw {hello.fw}  board {hello.board_id}  {len(latest)} fields",
        f"frames/s {stats['frames_per_s']:7.1f}   loop {stats['loop_hz']:7.1f} Hz   link {util * 100 if util is not None else 0:5.1f}% of {baud} baud"
        f"   drops {stats['drops']}   crc errors {stats['crc_errors']}   resets {stats['resets']}",
    ]
    if stats.get("fallback_pct"):
        lines[-1] += f"   fallback {stats['fallback_pct']:.1f}% of frames (model outside its learned region)"
    if stats.get("stages"):
        lines.append(stages_line(stats["stages"], clock))
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
