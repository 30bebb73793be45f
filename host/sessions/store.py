"""The session file: an append-only sequence of CRC-checked records behind a magic (spec: SESSIONS.md).

The writer keeps a session loadable at every moment: records are appended whole, flushed to the
OS by a background thread every FLUSH_S, fsynced about every FSYNC_S, and the file only gets its
final name once its header is in it. The reader never trusts a byte: it checks every record and
resynchronises on the next intact one after damage, so a killed or corrupted session still loads.
"""

import binascii
import datetime
import json
import os
import platform
import re
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from host import __version__
from host.errors import UserError
from host.files import plain

MAGIC = b"PLNDSES1"
FORMAT_VERSION = 1  # of the header and record contents; the magic's last byte versions the container
SYNC = b"\xa5\x5a"
HEADER = ord("H")  # JSON: who, what, when (first record)
BYTES = ord("B")  # bytes exactly as read from the serial port (a Link hands over 50 ms of reads at once)
MARKER = ord("M")  # JSON event: program started/stopped, error, note
END = ord("E")  # JSON: complete, reason, duration_s, summary (last record of a closed session)
KINDS = (HEADER, BYTES, MARKER, END)
_RECORD = struct.Struct("<2sBIdI")  # sync, kind, data length, host time, crc32 of kind..time + data
RECORD_HEADER = _RECORD.size  # 19
MAX_RECORD = 1 << 20  # data bytes per record; bigger chunks are split
FLUSH_S = 0.025  # a kill -9 loses about this much: well inside the promised 100 ms, even on a busy machine
FSYNC_S = 1.0
SUFFIX = ".session"
DEFAULT_DIR = "sessions"


class SessionWriteError(UserError):
    """Writing the session failed (disk full, file too large, I/O error); the file keeps what was written."""


class NotASessionError(UserError):
    """The file does not start with the session magic."""


def sessions_dir(directory=None):
    """--dir if given, else $POLYNIOD_SESSIONS, else ./sessions."""
    return Path(directory or os.environ.get("POLYNIOD_SESSIONS") or DEFAULT_DIR)


def safe_name(name):
    """A file-name-safe session name: letters, digits, '.', '_', '-' (others become '_'), no leading dot."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name or "")).lstrip("._-")[:100]
    return name or datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def encode_record(kind, host_time, data):
    """One record as bytes."""
    head = struct.pack("<BId", kind, len(data), host_time)
    return SYNC + head + struct.pack("<I", binascii.crc32(data, binascii.crc32(head))) + data


def _json(obj):
    return json.dumps(obj, separators=(",", ":"), default=plain).encode()


class SessionWriter:
    """Records one session: `with SessionWriter(dir, name, header) as w: Link(port, on_bytes=w.append_bytes)...`

    append_bytes/marker may be called from any thread. Once a write has failed, they and close()
    raise SessionWriteError; `error` holds it, so a main loop can stop and report it.
    """

    def __init__(self, path_or_dir, name=None, header=None):
        target = Path(path_or_dir)
        if target.suffix == SUFFIX:
            directory, name = target.parent, name or target.stem
        else:
            directory = target
        self.name = safe_name(name)
        self.error = None
        self.bytes = 0  # data bytes recorded in B records
        self._buffer = []
        self._lock = threading.Lock()
        self._closed = False
        self._created = time.time()
        self.header = {
            **(header or {}),
            "format": FORMAT_VERSION,
            "software": {"name": "polyniod", "version": __version__},
            "created": datetime.datetime.fromtimestamp(self._created, datetime.timezone.utc).isoformat(),
            "host": {"hostname": socket.gethostname(), "platform": platform.platform(), "python": sys.version.split()[0]},
        }
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.path, self._fd = self._create(directory)
        except OSError as e:
            raise SessionWriteError(f"cannot create a session in {directory}: {e.strerror or e}") from None
        self._last_fsync = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flusher, name=f"session-{self.name}", daemon=True)
        self._thread.start()

    def _create(self, directory):
        """Write magic + header under a temp name, then link it to the first free <name>[-N].session."""
        fd, tmp = tempfile.mkstemp(prefix=f".{self.name}.", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, 0o644)
            base, n = self.name, 1
            while True:
                self.name = base if n == 1 else f"{base}-{n}"
                final = directory / (self.name + SUFFIX)
                if not final.exists():
                    os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                    _write_all(fd, MAGIC + encode_record(HEADER, self._created, _json({**self.header, "name": self.name})))
                    try:
                        os.link(tmp, final)  # fails if the name was taken meanwhile: never overwrites
                        break
                    except FileExistsError:
                        pass
                n += 1
            os.unlink(tmp)
            self.header["name"] = self.name
            os.fsync(fd)
            _fsync_dir(directory)
            return final, fd
        except BaseException:
            os.close(fd)
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    # -- appending (any thread) ---------------------------------------------------------------
    def append_bytes(self, host_time, data):
        """Store a chunk read from the port, as it arrived."""
        for i in range(0, len(data), MAX_RECORD):
            self._append(encode_record(BYTES, host_time, bytes(data[i:i + MAX_RECORD])))
        self.bytes += len(data)

    def marker(self, host_time, event):
        """Store an event dict, e.g. {"event": "program", "params": {...}}."""
        self._append(encode_record(MARKER, host_time, _json(event)))

    def _append(self, record):
        with self._lock:
            if self.error:
                raise self.error
            if self._closed:
                raise SessionWriteError(f"session {self.path} is already closed")
            self._buffer.append(record)

    # -- writing (the flusher thread, and close) -----------------------------------------------
    def _flusher(self):
        while not self._stop.wait(FLUSH_S):
            if not self._flush():
                return

    def _flush(self, fsync=False):
        """Write what is buffered; fsync when FSYNC_S has passed (or asked). False once writing failed."""
        with self._lock:
            chunk, self._buffer = b"".join(self._buffer), []
        if self.error:
            return False
        try:
            if chunk:
                _write_all(self._fd, chunk)
            if fsync or time.monotonic() - self._last_fsync >= FSYNC_S:
                os.fsync(self._fd)
                self._last_fsync = time.monotonic()
        except OSError as e:
            self.error = SessionWriteError(
                f"cannot write session {self.path}: {e.strerror or e}; it keeps every complete record written "
                f"before and loads as incomplete")
            return False
        return True

    def close(self, complete=True, reason="", summary=None):
        """Write the end record, flush, fsync and close. Idempotent; raises SessionWriteError if writing failed.

        summary: figures shown without decoding the session (`host sessions` uses "telemetry_frames"
        and "drops" when present, as Session.stats names them).
        """
        now = time.time()
        end = {"complete": bool(complete), "reason": str(reason), "duration_s": now - self._created,
               "bytes": self.bytes, "summary": summary or {}}
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._buffer.append(encode_record(END, now, _json(end)))
        self._stop.set()
        self._thread.join()
        self._flush(fsync=True)
        os.close(self._fd)
        if self.error:
            raise self.error

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.close()
            else:
                self.close(complete=False, reason=f"{exc_type.__name__}: {exc}" if str(exc) else exc_type.__name__)
        except SessionWriteError:
            if exc_type is None:
                raise  # otherwise the exception already in flight says more


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ------------------------------------------------------------------------------------
def read_records(data):
    """([(kind, host_time, payload memoryview)], stats) of every intact record in a session file's bytes.

    Never raises on damage: a record with a bad sync, length or CRC is skipped up to the next
    intact record (skipped_bytes, damaged); an unfinished last record is left out (truncated_bytes).
    Raises NotASessionError only when the magic is wrong; a proper prefix of it is an empty session.
    """
    if data[:len(MAGIC)] != MAGIC[:len(data)]:
        raise NotASessionError("not a Polyniod session file")
    view = memoryview(data)
    records = []
    stats = {"records": 0, "skipped_bytes": 0, "damaged": 0, "truncated_bytes": 0, "unknown_records": 0}
    pos, n = len(MAGIC), len(data)
    while pos < n:
        end, kind, host_time = _record(data, view, pos)
        if end < 0:
            resume = _next_record(data, view, pos + 1)
            if resume < 0:  # nothing intact follows: an unfinished record, or damage running to the end
                stats["truncated_bytes" if end == -1 else "skipped_bytes"] += n - pos
                break
            stats["skipped_bytes"] += resume - pos
            stats["damaged"] += 1
            pos = resume
            continue
        if kind in KINDS:
            records.append((kind, host_time, view[pos + RECORD_HEADER:end]))
        else:
            stats["unknown_records"] += 1  # from a newer writer: skipped, not damage
        pos = end
    stats["records"] = len(records) + stats["unknown_records"]
    return records, stats


def _record(data, view, pos):
    """(end offset, kind, host time) of the intact record at pos; end is -1 if one starts there but runs
    past the end of the data, -2 if there is none."""
    if pos + RECORD_HEADER > len(data):
        return (-1 if SYNC.startswith(data[pos:pos + 2]) else -2), None, None
    sync, kind, length, host_time, crc = _RECORD.unpack_from(data, pos)
    end = pos + RECORD_HEADER + length
    if sync != SYNC or length > MAX_RECORD:
        return -2, None, None
    if end > len(data):
        return -1, None, None
    if binascii.crc32(view[pos + RECORD_HEADER:end], binascii.crc32(view[pos + 2:pos + RECORD_HEADER - 4])) != crc:
        return -2, None, None
    return end, kind, host_time


def _next_record(data, view, pos):
    """Offset of the next intact record at or after pos, or -1."""
    while True:
        pos = data.find(SYNC, pos)
        if pos < 0 or _record(data, view, pos)[0] > 0:
            return pos
        pos += 1


def read_header(path):
    """The header dict of a session file, reading only its first record ({} if it has none intact)."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC) + RECORD_HEADER)
        if head[:len(MAGIC)] != MAGIC[:len(head)]:
            raise NotASessionError("not a Polyniod session file")
        if len(head) < len(MAGIC) + RECORD_HEADER:
            return {}
        length = _RECORD.unpack_from(head, len(MAGIC))[2]
        records, _ = read_records(head + f.read(min(length, MAX_RECORD)))
    return decode_json(records[0][2]) if records and records[0][0] == HEADER else {}


def read_end(path, tail=65536):
    """(host_time, end dict) of the session's final E record if it is intact, else None; reads only the tail."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(len(MAGIC), size - tail)
        f.seek(start)
        data = f.read()
    view = memoryview(data)
    pos = data.rfind(SYNC + bytes([END]))
    while pos >= 0:
        if _record(data, view, pos)[0] == len(data):
            return _RECORD.unpack_from(data, pos)[3], decode_json(view[pos + RECORD_HEADER:])
        pos = data.rfind(SYNC + bytes([END]), 0, pos)
    return None


def decode_json(payload):
    """A JSON record's dict; {"undecodable": ...} if an intact record somehow holds no JSON object."""
    try:
        obj = json.loads(bytes(payload))
    except ValueError as e:
        return {"undecodable": str(e)}
    return obj if isinstance(obj, dict) else {"value": obj}
