"""`host ports`: which serial ports could be a Gen0 (real ESP32 boards and virtual ones); the other
commands' --port, which may be left out where exactly one is found."""

import json
import sys

from serial.tools import list_ports

from host.errors import UserError
from host.sim import registry

# USB ids of the bridges found on ESP32 boards, and Espressif's own native USB.
KNOWN_BRIDGES = {
    (0x10C4, 0xEA60): "ESP32? (CP210x USB-UART)",
    (0x1A86, 0x7523): "ESP32? (CH340 USB-UART)",
    (0x1A86, 0x55D4): "ESP32? (CH9102 USB-UART)",
    (0x0403, 0x6001): "ESP32? (FTDI USB-UART)",
    (0x0403, 0x6015): "ESP32? (FTDI USB-UART)",
}
ESPRESSIF_VID = 0x303A


def add_port(p):
    """The --port option of a command that talks to a board (board_port resolves it)."""
    p.add_argument("--port", help="serial port of the board (default: the one board `host ports` finds)")


def board_port(given):
    """--port, else the one board list_all() finds, named on stderr; none or several: a one-line UserError."""
    if given:
        return given
    rows = list_all()
    boards = [r for r in rows if r["kind"]]
    if len(boards) == 1:
        print(f"using {boards[0]['port']} ({boards[0]['kind']})", file=sys.stderr)
        return boards[0]["port"]
    if boards:
        raise UserError(f"{len(boards)} boards found ({', '.join(r['port'] for r in boards)}): pass --port PORT")
    others = f" (serial ports: {', '.join(r['port'] for r in rows)})" if rows else ""
    raise UserError(f"no board found{others}: plug one in or start `host sim`, or pass --port PORT")


def add_parser(sub):
    p = sub.add_parser("ports", help="list serial ports, marking likely ESP32 boards and running virtual Gen0s")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(run=run)


def kind_of(vid, pid):
    if vid is None:
        return ""
    if vid == ESPRESSIF_VID:
        return "ESP32 (Espressif native USB)"
    return KNOWN_BRIDGES.get((vid, pid), "")


def list_all():
    rows = []
    for note in registry.running():
        rows.append({
            "port": note.get("link") or note["port"],
            "kind": "virtual Gen0",
            "description": f"host sim (pid {note['pid']}, pty {note['port']}, seed {note.get('seed', 0)})",
            "vid": None,
            "pid": None,
        })
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        rows.append({
            "port": p.device,
            "kind": kind_of(p.vid, p.pid),
            "description": " ".join(x for x in (p.manufacturer, p.product or p.description) if x and x != "n/a"),
            "vid": p.vid,
            "pid": p.pid,
        })
    return rows


def run(args):
    rows = list_all()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no serial ports found (plug in the board, or start a virtual one with `host sim`)")
        return 0
    width = max(len(r["port"]) for r in rows)
    for r in rows:
        ids = f"{r['vid']:04x}:{r['pid']:04x}" if r["vid"] is not None else ""
        print(f"{r['port']:<{width}}  {r['kind'] or '-':<30} {ids:<10} {r['description']}")
    return 0
