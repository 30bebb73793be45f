"""Deploy: a model blob onto the running robot over the live link, then proof that it computes
exactly what the host's reference does.

The blob travels as a windowed transfer (`xfer begin model`, binary records with their own CRC,
as many in flight as the board's window says: the ESP32 drops what overflows its 260-byte RX
ring; a gap or a lost record sends the rest again from the board's offset; `xfer end` checks the
whole). The device checks it, stores it (temp file + renames, the previous one kept) and swaps it in
between ticks: no reboot, no mpremote. The parity check sends random int8 input rows with
`mtest` and compares the device's int8 outputs with host.export.reference bit for bit.
The same transfer carries a target trajectory for track mode (slot `traj`).
"""

import time
import zlib
from collections import deque
from pathlib import Path

import numpy as np

from host.errors import DeviceError, UserError
from host.export.reference import Reference
from host.link.client import CommandError
from host.link.port import DEFAULT_BAUD
from polyniod_firmware import mlp
from polyniod_firmware import protocol as P

BLOB_NAME = "model.bin"  # inside a models/NAME directory
ACK_DATA = 1021  # bytes of data an ack carries (firmware telemetry.ACK_MAX_PAYLOAD - 3)
END_TIMEOUT = 5.0  # s: `xfer end` checks, writes flash and builds the model
RECORD_TIMEOUT = 0.5  # s: a record's ack overdue -> send again from the last acked offset
MAX_RESENDS = 8  # going back this many times in a row without the board taking a byte: give up


def read_blob(path):
    """(blob bytes, Reference) of a models/NAME directory or a .bin file, checked as the device will."""
    path = Path(path)
    file = path / BLOB_NAME if path.is_dir() else path
    try:
        blob = file.read_bytes()
    except FileNotFoundError:
        where = f"{path} has no {BLOB_NAME}" if path.is_dir() else f"{path} does not exist"
        raise UserError(f"{where}: give a models/NAME directory (from `host train`) or a model .bin file") from None
    except OSError as e:
        raise UserError(f"cannot read {file}: {e.strerror}") from None
    try:
        return blob, Reference(blob)
    except mlp.BlobError as e:
        raise UserError(f"{file} is not a model this firmware runs ({e.kind}): {e}") from None


def physical_seconds(n_bytes, baud):
    """The link's floor for moving n_bytes: 10 bits a byte (start, 8 data, stop) at baud."""
    return n_bytes * 10 / baud


def transfer(link, slot, data, progress=None, window=None):
    """Send data into a device slot; the `xfer end` ack data (a dict).

    Records go out while the bytes unacked stay within the board's window (its `xfer begin` ack;
    `window` overrides it, for tests). progress(acked, total) is called after every acked record.
    A refusal raises CommandError (after an `xfer abort`, so the board holds no half transfer)."""
    data = bytes(data)
    begin = link.request_json("xfer", "begin", slot, len(data), "%08x" % zlib.crc32(data))
    try:
        _stream(link, data, window or begin["window"], progress)
        return link.request_json("xfer", "end", timeout=END_TIMEOUT, retries=1)
    except DeviceError:
        if not link.error:
            try:
                link.request("xfer", "abort")
            except DeviceError:
                pass
        raise


def _stream(link, data, limit, progress):
    """Go-back-N over records: the board stores only the record at its offset and acks in order, so an
    ok ack confirms everything before it; a gap (E_OFFSET, data: the offset it expects) or an overdue
    ack (a record lost whole, or its ack) sends the rest again from where the board is. A loss also
    halves the window (a board that drains slower than promised: a busy tick, a lower rate), each ack
    widens it again up to `limit`, so bytes still in flight cannot keep its ring overflowing."""
    acked = pos = 0
    window = limit
    flight = deque()  # (seq, end, wire bytes) of the records sent and not yet acked, oldest first
    unacked = resends = 0
    while acked < len(data):
        while pos < len(data) and (not flight or unacked + P.MAX_LINE <= window):
            seq, pos, size = link.send_record(data, pos)
            flight.append((seq, pos, size))
            unacked += size
        seq, end, size = flight[0]
        ack = link.wait_ack(seq, RECORD_TIMEOUT)
        if ack is not None and ack[0] == P.E_OK:
            flight.popleft()
            unacked -= size
            acked, resends = end, 0
            window = min(limit, window + P.MAX_LINE // 4)
            if progress:
                progress(acked, len(data))
            continue
        if ack is not None and ack[0] != P.E_OFFSET:
            raise CommandError("xfer", ack[0], ack[1].decode("utf-8", "replace"))
        resends += 1
        if resends > MAX_RESENDS:
            raise DeviceError(f"the board took no data at offset {acked} of {len(data)} in {MAX_RESENDS} resends: "
                              f"is the firmware still running?")
        link.forget(seq for seq, _, _ in flight)
        flight.clear()
        unacked = 0
        window = max(P.MAX_LINE, window // 2)
        pos = acked = int(ack[1]) if ack is not None else acked


def send_trajectory(link, targets_deg):
    """Targets [ticks, joints] in degrees -> the device's `traj` slot (int16, 0.01 deg); its ack data.

    `track traj` then follows them, one row per loop tick."""
    cdeg = np.rint(np.asarray(targets_deg, dtype=np.float64) * 100)
    if cdeg.ndim != 2 or not cdeg.size or not np.isfinite(cdeg).all() or np.abs(cdeg).max() > 32767:
        raise UserError("a trajectory is finite angles [ticks, joints] within +-327 deg")
    return transfer(link, "traj", cdeg.astype("<i2").tobytes())


def mtest(link, n_in, n_out, rows):
    """The device's int8 outputs [len(rows), n_out] for int8 input rows, as many per line as fit."""
    rows = np.asarray(rows, dtype=np.int8)
    per_line = max(1, min(P.CHUNK // n_in, ACK_DATA // n_out))
    out = []
    for r in range(0, len(rows), per_line):
        part = rows[r:r + per_line]
        data = link.request("mtest", P.encode_chunk(part.tobytes()))
        if len(data) != len(part) * n_out:
            raise DeviceError(f"mtest answered {len(data)} bytes for {len(part)} rows of {n_out} outputs")
        out.append(np.frombuffer(data, dtype=np.int8).reshape(len(part), n_out))
    return np.concatenate(out)


def parity(link, reference, n=256, seed=0):
    """n random int8 input rows (led by the extremes) through the device and the reference.

    {"vectors", "mismatches", "first_mismatch" (row, inputs, device, host) or None}."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n, reference.n_in), dtype=np.int64)
    for k, v in enumerate((-128, 127, 0)[:n]):
        x[k] = v
    device = mtest(link, reference.n_in, reference.n_out, x).astype(np.int64)
    host = reference.infer_q(x).astype(np.int64)
    bad = np.flatnonzero((device != host).any(axis=1))
    first = None
    if len(bad):
        k = int(bad[0])
        first = {"row": k, "inputs": x[k].tolist(), "device": device[k].tolist(), "host": host[k].tolist()}
    return {"vectors": n, "mismatches": len(bad), "first_mismatch": first}


MAX_CHECKS = 1 << 20  # parity vectors at most (~4 min of mtest at 115200 baud for a 4-input model)


def check_count(checks):
    """`--checks N`: a whole number 0..MAX_CHECKS, else a UserError."""
    if isinstance(checks, bool) or not isinstance(checks, (int, np.integer)) or not 0 <= checks <= MAX_CHECKS:
        raise UserError(f"--checks {checks}: give a number of random vectors from 0 (none) to {MAX_CHECKS}")
    return int(checks)


def deploy(link, blob, reference, checks=256, baud=DEFAULT_BAUD, progress=None):
    """Send a checked blob, swap it in, spot-check parity; a summary dict.

    A refusal raises DeviceError saying what the board said and that the active model keeps
    running; parity mismatches are reported in the summary (`parity.mismatches`). `checks` is checked
    before the board is touched (check_count)."""
    check_count(checks)
    before = link.request_json("status").get("model") or ""
    t0 = time.monotonic()
    try:
        ack = transfer(link, "model", blob, progress)
    except CommandError as e:
        running = f"model {before}" if before else "no model, as before"
        raise DeviceError(f"{e}; the board keeps running {running}") from None
    seconds = time.monotonic() - t0
    if ack.get("model_id") != "%08x" % reference.model_id:
        raise DeviceError(f"the board reports model {ack.get('model_id')}, the blob is {reference.model_id:08x}")
    limit = physical_seconds(len(blob), baud)
    summary = {
        "model_id": ack["model_id"], "previous": before, "task": ack["task"], "inputs": ack["inputs"],
        "outputs": ack["outputs"], "emitter": ack["emitter"], "drives": ack["drives"], "bytes": len(blob),
        "seconds": round(seconds, 3),
        "kib_per_s": round(len(blob) / 1024 / seconds, 2), "baud": baud, "limit_seconds": round(limit, 3),
        "link_efficiency": round(limit / seconds, 3),
    }
    summary["parity"] = parity(link, reference, checks) if checks else None
    return summary
