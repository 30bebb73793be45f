"""Put the Polyniod firmware (and the robot description) onto a board with mpremote.

Files are copied into a staging folder on the board and only then renamed into
place, so an interrupted flash leaves the previous firmware whole.
"""

import binascii
import tempfile
import zlib
import time

from host.errors import DeviceError
from host.firmware_files import firmware_files
from host.flash.mpremote import board_info, mpremote
from host.flash.mpy import compile_all
from host.link.client import Link
from host.link.port import open_port

MIN_MICROPYTHON = (1, 22, 0)
STAGING = ".flash_new"
CHUNK = 4096  # bytes of a file per exec: ~5.5 KB of script, ~20 KB of the board's heap while it runs
PACKED_CHUNK, PACKED_WBITS = 6144, 10  # compressed (.mpy ~1.5x): ~5.5 KB of script again; a 1 KiB window


def flash_firmware(port, robot=None, mpy=True, reset=True, say=print):
    """Install the firmware on the board at `port`; after a reset, return the running firmware's hello.

    mpy: modules compiled by mpy-cross for the board's .mpy version and CPU (host/flash/mpy.py);
    False installs the source. .mpy is the default: measured with benchmarks/bench_boot.py on the
    virtual Gen0 at an ESP32's pace, it boots ~3x sooner, leaves the largest free RAM block
    over twice as large (deploys need the blob in one piece) and takes 40% of the flash."""
    open_port(port).close()  # clear errors for missing / busy / foreign ports before mpremote runs
    name, version, mpy_field, machine, packed = board_info(port)
    if name != "micropython":
        raise DeviceError(f"{port} runs {name}, not MicroPython: write MicroPython with `host flash --micropython FIRMWARE.bin --port {port}`")
    if version < MIN_MICROPYTHON:
        raise DeviceError(
            f"{port} runs MicroPython {'.'.join(map(str, version))}, older than {'.'.join(map(str, MIN_MICROPYTHON))}: "
            f"update it with `host flash --micropython FIRMWARE.bin --port {port}`"
        )
    say(f"board: MicroPython {'.'.join(map(str, version))} on {machine}")
    with tempfile.TemporaryDirectory() as tmp:
        files = firmware_files(robot)
        if mpy:
            files = compile_all(files, tmp, mpy_field, say=say)
        install(port, files, say, packed)
    if not reset:
        return None
    say("resetting the board ...")
    mpremote(port, "reset", timeout=30)
    time.sleep(0.5)
    with Link(port) as link:
        hello = link.connect(timeout=5.0)
    say(f"firmware v{hello.fw} running on board {hello.board_id} (protocol v{hello.proto})")
    return hello


def install(port, files, say=print, packed=False):
    """Copy into a staging folder, then rename every file into place in one exec.

    Each file goes as base64 in `exec`s of CHUNK bytes (PACKED_CHUNK, zlib-compressed, when the board has
    MicroPython's `deflate` module: `packed`), each chunk checked against its CRC-32 on the board before it is
    written. mpremote's own `fs cp` sends 256-byte `repr`s (a .mpy's bytes mostly as 4-character escapes), one
    raw-REPL round trip each: 3.9 KiB/s on the virtual Gen0 at an ESP32's pace, against 6.8 KiB/s this way
    on the same 115200-baud link (the firmware's 65 KiB in 9.6 s instead of 16.9), and 8.7-9.0 KiB/s packed
    (7.2-7.5 s: the .mpy files compress ~1.5x)."""
    total = sum(src.stat().st_size for src, _ in files)
    say(f"copying {len(files)} files ({total / 1024:.1f} KiB{', compressed' if packed else ''}) to {port} ...")
    # an empty staging folder: one an interrupted flash left behind holds files this one may not send
    actions = ["exec", f"import os\ntry:\n os.mkdir('{STAGING}')\nexcept OSError:\n for n in os.listdir('{STAGING}'):\n  os.remove('{STAGING}/'+n)"]
    for src, name in files:
        data = src.read_bytes()
        step = PACKED_CHUNK if packed else CHUNK
        for at in range(0, max(len(data), 1), step):
            actions += ["+", "exec", chunk_script(f"{STAGING}/{name}", data[at:at + step], at, name, len(data), packed)]
    start = time.monotonic()
    sent = [0, 0]

    def progress(line):  # each file's last chunk prints `wrote NAME SIZE`
        parts = line.split()
        if len(parts) == 3 and parts[0] == "wrote":
            sent[0] += 1
            sent[1] += int(parts[2])
            took = max(time.monotonic() - start, 1e-6)
            say(f"  [{sent[0]}/{len(files)}] {sent[1] / 1024:6.1f}/{total / 1024:.1f} KiB  {sent[1] / took / 1024:5.1f} KiB/s  {parts[1]}")

    mpremote(port, *actions, timeout=300, on_line=progress)
    names = [name for _, name in files]
    # A .py beside a .mpy of the same module would shadow it (and vice versa): remove the other one.
    stale = [n[:-3] + ".mpy" for n in names if n.endswith(".py")] + [n[:-4] + ".py" for n in names if n.endswith(".mpy")]
    commit = (
        "import os\n"
        f"for n in {names!r}:\n"
        f" os.rename('{STAGING}/'+n, n)\n"
        f"for n in {stale!r}:\n"
        " try:\n  os.remove(n)\n except OSError:\n  pass\n"
        f"os.rmdir('{STAGING}')\n"
    )
    mpremote(port, "exec", commit, timeout=60)
    took = time.monotonic() - start
    say(f"installed {len(files)} files in {took:.1f} s ({total / 1024 / max(took, 1e-6):.1f} KiB/s)")


def chunk_script(dest, data, at, name, size, packed=False):
    """The exec that writes `data` at offset `at` of the board's file `dest` (a new file at 0), after checking
    its CRC-32; the file's last chunk prints `wrote NAME SIZE` (progress). packed: sent zlib-compressed with a
    2**PACKED_WBITS-byte window, which is all the board's `deflate` then allocates."""
    end = at + len(data) >= size
    if packed:
        z = zlib.compressobj(9, zlib.DEFLATED, PACKED_WBITS)
        b64 = binascii.b2a_base64(z.compress(data) + z.flush(), newline=False).decode()
        read = (f"import binascii,deflate,io\ntry:\n d=deflate.DeflateIO(io.BytesIO(binascii.a2b_base64('{b64}')),"
                "deflate.ZLIB).read()\nexcept Exception:\n d=b''\n")  # a damaged stream fails the CRC check below
    else:
        b64 = binascii.b2a_base64(data, newline=False).decode()
        read = f"import binascii\nd=binascii.a2b_base64('{b64}')\n"
    return (read +
            f"if binascii.crc32(d)!={binascii.crc32(data)}:\n raise ValueError('{name}: damaged on the way, flash again')\n"
            f"f=open('{dest}','{'wb' if at == 0 else 'ab'}')\nf.write(d)\nf.close()"
            + (f"\nprint('wrote {name} {size}')" if end else ""))
