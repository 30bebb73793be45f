"""`host replay`: a recorded session again -- offline (statistics, plot, a model's predictions over it)
or onto a robot (--to-port)."""

import json
import sys

from host.commands import add_sessions_dir
from host.errors import UserError
from host.predict import ModelRun
from host.replay import replay, replay_to_port
from host.train.dataset import dropped_text
from host.sessions import find_session, load
from host.sessions.plot import plot
from host.signals import with_stop_signals
from host.table import print_table


def add_parser(sub):
    p = sub.add_parser(
        "replay", help="replay a session: statistics and a plot, or its commands onto a robot",
        description="Replay a recorded session. Offline (the default) its stored bytes go through the link's decoder "
                    "again as fast as possible and it prints the device loop's timing (p50/p99/max, the largest gap "
                    "and what caused it), drops and CRC errors; --plot draws it, --model runs a trained model over it. "
                    "--to-port sends its servo commands to a robot at the recorded timing and records the result.")
    p.add_argument("session", metavar="SESSION", help="session file or name (see `host sessions`)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, metavar="X",
                      help="play at X times the recorded speed, sleeping between reads as the live link did "
                           "(1: real time; left out: as fast as possible)")
    pace.add_argument("--max", action="store_true", help="as fast as possible (what leaving out --speed does)")
    p.add_argument("--plot", metavar="FILE.png", help="write a plot: commanded vs measured per joint, and the IMU")
    p.add_argument("--model", metavar="MODEL",
                   help="run a models/NAME directory or model .bin over the session, int8 (as the device) and float: "
                        "its prediction errors, and its predictions in the plot")
    p.add_argument("--to-port", metavar="PORT", help="send the recorded servo commands to the robot on PORT and record it")
    p.add_argument("--name", help="name of the new session (--to-port)")
    add_sessions_dir(p, role=": where SESSION is looked up by name and the new session goes")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.set_defaults(run=run)


def run(args):
    path = find_session(args.session, args.out)
    if args.to_port:
        if args.model:
            raise UserError("--model runs a model offline over the session: drop --to-port "
                            "(put a model on the robot with `host deploy`)")
        if args.max or args.speed is not None or args.plot:
            raise UserError("--to-port replays at the recorded timing: drop --speed/--max/--plot (plot the new session afterwards)")
        result = with_stop_signals(lambda stop: replay_to_port(path, args.to_port, name=args.name,
                                                                out=args.out, stop=stop))
        _show_to_port(result, args.json)
        return 0
    if args.speed is not None and not args.speed > 0:
        raise UserError(f"--speed {args.speed:g}: give a factor > 0 (1: real time), or leave it out for as fast as possible")
    session = load(path)
    model = ModelRun(args.model, session) if args.model else None  # its errors come before any playback
    if args.speed is not None:
        span = session.stats["duration_s"] / args.speed
        print(f"replaying {session.name} at x{args.speed:g}: {span:.1f} s (leave out --speed: at once)", file=sys.stderr)
    stats = replay(session, speed=args.speed, predict=model.predict if model else None)
    if model:
        stats["model"] = model.report()
    if args.plot:
        plot(session, args.plot, predicted=model.predicted() if model else None, title=model.title() if model else None)
        stats["plot"] = args.plot
    if args.json:
        print(json.dumps(stats))
        return 0
    iv = stats["interval_us"]
    print(f"{args.session}: {stats['frames']} frames in {stats['duration_s']:.2f} s ({stats['rate_hz']:.1f} Hz), "
          f"{stats['segments']} segment(s), {'complete' if stats['complete'] else 'INCOMPLETE'}")
    print(f"  device loop interval (us): nominal {_us(iv['nominal'])}, p50 {_us(iv['p50'])}, p99 {_us(iv['p99'])}, "
          f"max {_us(iv['max'])}; mean {_us(iv['mean'])}, std {_us(iv['jitter_std'])} (mean, std and max carry the gaps)")
    gap = stats.get("largest_gap")
    if gap:
        print(f"  largest gap {gap['ms']:.0f} ms at t={gap['at_s']:.2f} s: {gap['why']}")
    played = stats["played"]
    print(f"  dropped frames {stats['drops']}, crc errors {stats['crc_errors']}; played {played['frames']} frames "
          f"in {played['seconds']:.2f} s ({'as fast as possible' if played['speed'] == 'max' else 'x%g' % played['speed']})")
    if model:
        _show_model(stats["model"])
    if args.plot:
        print(f"  plot: {args.plot}")
    return 0


def _us(v):
    return "-" if v is None else f"{v:.0f}"


def _show_model(m):
    print(f"model {m['model_id']} ({m['task']}{', ' + m['name'] if m['name'] else ''}) over {m['rows']['used']} rows "
          f"(left out: {dropped_text(m['rows']['dropped'])}); error vs the logged values:")
    figure = lambda e: "-" if e is None else f"{e['rmse']:.2f} / {e['max_abs']:.2f}"  # noqa: E731
    rows = [("  output", "unit", "int8 rmse / max", "float rmse / max", "int8 vs float rms / max")]
    for name, o in m["outputs"].items():
        rows.append((f"  {name}", o["unit"], figure(o["int8"]), figure(o["float"]), figure(o["int8_vs_float"])))
    print_table(rows)
    for name, o in m["outputs"].items():
        at = o.get("int8_max_at")
        if at:
            print(f"  {name}: int8 max error {o['int8']['max_abs']:.0f} {o['unit']} at t={at['t_s']:.2f} s "
                  f"(row {at['row']}{', during ' + at['doing'] if at['doing'] else ''}"
                  f"{'; the logged value stepped by %g there' % at['logged_step'] if at.get('logged_step') else ''})")
    if not m["float"]:
        print(f"  float: unavailable ({m['float_unavailable']})")


def _show_to_port(result, as_json):
    if as_json:
        print(json.dumps(result))
        return
    s, c = result["session"], result["commands"]
    print(f"new session {s['session']}: {s['telemetry_frames']} frames, {s['drops']} dropped, {s['crc_errors']} crc errors; "
          f"{c['sets']} set commands, {c['acked']} acked, {c['refused']} refused, {c['lost']} unanswered")
    if c["watchdog_frames"]:
        print(f"  the robot held on its watchdog for {c['watchdog_frames']} frames: the host fell behind", file=sys.stderr)
    for why in c["refusals"]:
        print(f"  refused: {why}", file=sys.stderr)
    cmp = result.get("compare")
    if cmp:
        print(f"measured angles, replay vs original over {cmp['compared_s']:.2f} s ({cmp['frames']} frames):")
        for j, d in cmp["joints"].items():
            print(f"  {j:<10} rmse {d['rmse_deg']:.2f} deg   max {d['max_deg']:.2f} deg")
    else:
        print(f"replay ended early ({s['reason']}): no comparison")
