"""Bench: what the connected robot reaches, measured on it, as one table for a bug report.

- loop: rate achieved vs configured, busy_us and overruns from ~2 s of telemetry (monitor's Rates
  over the frames' device time stamps; the loop rate is the frame rate times `telemetry_every`),
  and where a tick's time goes: per stage mean/max µs over the same window (the firmware's
  `stages`, asked before and after it: each call starts the figures again);
- inference: µs per `infer_q` of the active model, timed on the board itself (`mtime`);
- telemetry: bytes/s received against the link's baud/10;
- transfer: `host deploy`'s windowed transfer records against bytes x 10 / baud: a hold trajectory into
  the `traj` slot (the active model untouched), or, given a model, the real deploy.

Every µs is the board's clock: measured on a real board; on a virtual Gen0 an ESP32's time (the VM's
work billed at the CPU model's factor) unless it runs at the VM's own speed (`host sim --cpu host`).
The environment's `cpu` and `us` say which (watch.board_clock, from the simulator's registry note).
"""

import datetime
import platform
import time

import numpy as np
import serial

from host import __version__
from host.watch import Rates, board_clock, read_stages
from host.deploy import deploy, physical_seconds, send_trajectory
from host.errors import DeviceError, UserError
from host.flash.mpy import ARCHS, arch_index, board_mpy_version

MTIME_N = 1000  # inferences asked per `mtime` (the board stops early past its time budget)
MTIME_CALLS = 5  # the best of these is reported: other work on the board only ever adds time
TRAJ_BYTES = 4096  # the hold trajectory sent to time the transfer path
MAX_SECONDS = 600.0  # of telemetry watched for the loop figures


def environment(hello, port, baud):
    """Who measured what where: firmware, board, CPU model (what its µs are), MicroPython, host versions, port, date."""
    clock = board_clock(port)
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "port": port, "baud": baud, "cpu": clock["cpu"], "us": clock["us"], "us_tag": clock["us_tag"],
        "firmware": hello.fw, "protocol": hello.proto, "board_id": hello.board_id, "micropython": hello.micropython,
        "mpy": mpy_text(hello.mpy), "device_platform": hello.platform,
        "robot": hello.robot.get("robot"), "board": hello.robot.get("board"),
        "host": __version__, "python": platform.python_version(), "pyserial": serial.__version__,
        "numpy": np.__version__, "os": platform.platform(terse=True),
    }


def mpy_text(code):
    """sys.implementation._mpy as "6.3 xtensawin": the .mpy version and the native code it runs."""
    if not code:
        return None
    arch = arch_index(code)
    return "%d.%d" % board_mpy_version(code) + (f" {ARCHS[arch]}" if 0 < arch < len(ARCHS) else "")


def loop(link, seconds, baud, telemetry_every, rate_hz, settle=0.6):
    """Loop rate achieved vs `rate_hz` configured, busy_us p50/p99, overruns and link load over
    `seconds` of telemetry; per-stage mean/max µs over the same window (None: a firmware without `stages`).

    Waits `settle` s first: what the bench asked before (hello, status, a deploy) held the loop,
    which then catches up with a burst of frames the link needs a while to drain. The `stages` that
    opens the window is answered in a tick of it: listen's max holds that command."""
    time.sleep(settle)
    opened = read_stages(link)
    while not link.telemetry.empty():
        link.telemetry.get_nowait()
    rates = Rates(link)
    gaps0, busy, overruns = link.seq_gaps, [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        item = link.next_telemetry(timeout=0.1)
        if link.error:
            raise DeviceError(link.error)
        if item:
            rates.add(item[2])
            busy.append(item[3]["busy_us"])
            overruns.append(int(item[3]["overruns"]))
    figures = rates.take(baud)
    closed = read_stages(link) if opened else None
    stages = {"stages": closed["stages"] if closed else None, "stage_ticks": closed["ticks"] if closed else None,
              "tx_waits": closed["tx_waits"] - opened["tx_waits"]
              if closed and None not in (closed["tx_waits"], opened["tx_waits"]) else None}
    if not closed:
        stages["stages_note"] = "the board's firmware has no `stages` command (update it: `host flash`)"
    if len(busy) < 2:
        return {"frames": len(busy), "rate_hz": rate_hz,
                "note": "no telemetry: the board sends none (`telemetry 1` turns it on)", **stages}
    frames_per_s = figures["frames_per_s"]
    loop_hz = figures["loop_hz"] * telemetry_every
    return {
        "frames": len(busy), "seconds": seconds,
        "loop_hz": loop_hz, "rate_hz": rate_hz, "achieved": loop_hz / rate_hz if rate_hz else None,
        **stages,
        "busy_us_p50": float(np.percentile(busy, 50)), "busy_us_p99": float(np.percentile(busy, 99)),
        "overruns": (overruns[-1] - overruns[0]) & 0xFFFF, "drops": link.seq_gaps - gaps0,
        "frames_per_s": frames_per_s, "bytes_per_s": figures["link_bytes_per_s"],
        "bytes_per_frame": figures["link_bytes_per_s"] / frames_per_s if frames_per_s else None,
        "capacity_bytes_per_s": baud / 10, "utilisation": figures["link_utilisation"],
    }


def inference(link, model_id, calls=MTIME_CALLS, n=MTIME_N):
    """µs per inference of the active model, best and median of `calls` timings on the board."""
    if not model_id:
        return {"model": None, "note": "no model on the board: deploy one (`host deploy`, or `host bench --model DIR`)"}
    runs = [link.request_json("mtime", n, timeout=2.0) for _ in range(calls)]
    per = sorted(r["us_per_inference"] for r in runs)
    return {"model": runs[0]["model"], "emitter": runs[0]["emitter"], "calls": calls, "n": sum(r["n"] for r in runs),
            "us_per_inference": per[0], "us_per_inference_median": per[len(per) // 2]}


def transfer(link, joints, baud, size=TRAJ_BYTES):
    """A hold trajectory of ~size bytes into the `traj` slot, timed against the link's physical limit."""
    ticks = max(1, size // (2 * joints))
    t0 = time.monotonic()
    send_trajectory(link, np.zeros((ticks, joints)))
    seconds = time.monotonic() - t0
    n = ticks * 2 * joints
    return _transfer_figures("trajectory into the traj slot (the deploy transfer path; active model untouched)",
                             n, seconds, baud)


def deploy_model(link, blob, reference, baud, checks=64):
    """The real deploy of a model (its parity spot-check timed apart), as transfer figures."""
    summary = deploy(link, blob, reference, checks=checks, baud=baud)
    figures = _transfer_figures(f"deploy of model {summary['model_id']}", summary["bytes"], summary["seconds"], baud)
    figures["parity"] = summary["parity"]
    return figures


def _transfer_figures(what, n_bytes, seconds, baud):
    limit = physical_seconds(n_bytes, baud)
    return {"what": what, "bytes": n_bytes, "seconds": seconds, "limit_seconds": limit,
            "efficiency": limit / seconds, "kib_per_s": n_bytes / 1024 / seconds}


def check_seconds(seconds):
    """`--seconds S` of telemetry: a finite time > 0 and at most MAX_SECONDS, else a UserError."""
    if not (isinstance(seconds, (int, float)) and 0 < seconds <= MAX_SECONDS):
        raise UserError(f"--seconds {seconds:g}: give seconds of telemetry > 0 and at most {MAX_SECONDS:g}")
    return seconds


def bench(link, hello, port, baud, seconds=2.0, model=None):
    """Every figure, each measured alone: a given model (blob, reference) is deployed first, then the
    loop is watched with no command in flight, then the model is timed, then a transfer unless deployed.
    `seconds` is checked before anything is asked of the board."""
    check_seconds(seconds)
    status = link.request_json("status")
    out = {"environment": environment(hello, port, baud),
           "robot": {"mode": status["mode"], "rate_hz": status["rate_hz"], "telemetry_every": status["telemetry_every"]}}
    deployed = deploy_model(link, *model, baud) if model else None
    out["loop"] = loop(link, seconds, baud, status["telemetry_every"], status["rate_hz"])
    out["inference"] = inference(link, link.request_json("status")["model"])
    out["transfer"] = deployed or transfer(link, len(hello.joints), baud)
    return out


def table(figures):
    """Rows (label, value) of the bench's figures, for host.table.print_table; each µs figure says what kind of µs."""
    env, robot, lp, inf, tr = (figures[k] for k in ("environment", "robot", "loop", "inference", "transfer"))
    mp = f"MicroPython {env['micropython']} ({env['device_platform']}, mpy {env['mpy']})" if env["micropython"] else "MicroPython ?"
    us = device_us(env)
    rows = [
        ("polyniod bench", env["date"]),
        ("port", f"{env['port']} at {env['baud']} baud"),
        ("firmware", f"v{env['firmware']} (protocol {env['protocol']}), board {env['board_id']}, {mp}"),
        ("robot", f"{env['robot']} ({env['board']}), mode {robot['mode']}, rate {robot['rate_hz']} Hz, "
                  f"telemetry every {robot['telemetry_every']} tick(s)"),
        ("cpu", f"{env['cpu']}; the us below are {env['us']}"),
        ("host", f"polyniod {env['host']}, Python {env['python']}, pyserial {env['pyserial']}, numpy {env['numpy']}, {env['os']}"),
    ]
    if "loop_hz" in lp:
        period = 1e6 / robot["rate_hz"]
        rows += [
            ("loop rate", f"{lp['loop_hz']:.1f} Hz achieved of {robot['rate_hz']} Hz configured "
                          f"({lp['loop_hz'] / robot['rate_hz'] * 100:.1f} %), from {lp['frames']} frames over {lp['seconds']:.1f} s"),
            ("busy_us", f"p50 {lp['busy_us_p50']:.0f} us, p99 {lp['busy_us_p99']:.0f} us of a {period:.0f} us tick ({us}); "
                        f"{lp['overruns']} overruns, {lp['drops']} frames lost"),
        ]
    else:
        rows.append(("loop rate", lp["note"]))
    rows.append(("stages", stages_text(lp, us)))
    if "loop_hz" in lp:
        rows.append(("telemetry", f"{lp['bytes_per_s']:.0f} B/s = {lp['utilisation'] * 100:.1f} % of {lp['capacity_bytes_per_s']:.0f} B/s "
                                  f"(baud/10); {lp['frames_per_s']:.1f} frames/s x {lp['bytes_per_frame']:.1f} B"))
    if inf["model"]:
        rows.append(("inference", f"{inf['us_per_inference']:.2f} us (median {inf['us_per_inference_median']:.2f}; {us}) "
                                  f"model {inf['model']} ({inf['emitter']}), best of {inf['calls']} timings, "
                                  f"{inf['n']} inferences on the board"))
    else:
        rows.append(("inference", inf["note"]))
    rows.append(("transfer", f"{tr['bytes']} B in {tr['seconds']:.2f} s ({tr['kib_per_s']:.2f} KiB/s); limit "
                             f"{tr['limit_seconds']:.3f} s = bytes x 10 / baud -> {tr['efficiency'] * 100:.0f} % of it; "
                             f"{tr['what']}"))
    if tr.get("parity"):
        p = tr["parity"]
        rows.append(("parity", f"{p['vectors'] - p['mismatches']}/{p['vectors']} random int8 vectors bit for bit"))
    return rows


def device_us(env):
    """What the board's µs are, to stand beside each one: a virtual Gen0's CPU model by name
    (`esp32 x25 CPU model; ESP32 us, virtual Gen0`, `host CPU: VM's own speed, ...`); a real board's as measured."""
    model, tag = (env.get("cpu") or "").split(" (")[0], env["us_tag"]
    if not model or "virtual Gen0" not in tag and not model.startswith("host") or "unknown" in tag:
        return tag
    return f"host CPU: {tag}" if model.startswith("host") else f"{model} CPU model; {tag}"


def stages_text(lp, us):
    """`mean/max us per stage (share of the tick's mean): sense 1054/7058 (60 %), ...; tick 1763/15551 over 408 ticks`."""
    if not lp.get("stages"):
        return lp.get("stages_note", "no stage times")
    st = lp["stages"]
    tick = st["tick"]["mean_us"]
    parts = ", ".join(f"{name} {s['mean_us']}/{s['max_us']}" + (f" ({s['mean_us'] / tick * 100:.0f} %)" if tick else "")
                      for name, s in st.items() if name != "tick")
    waits = f"; the TX queue overflowed {lp['tx_waits']} times (the loop waited on the UART)" if lp.get("tx_waits") else ""
    return (f"mean/max us ({us}): {parts}; tick {tick}/{st['tick']['max_us']} over {lp['stage_ticks']} ticks "
            f"(listen's max holds the `stages` call that opened the window){waits}")
