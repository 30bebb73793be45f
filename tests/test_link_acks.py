"""Acks across connections: no answer is ever taken for another command's (PROTOCOL.md "Connections").

A board keeps answering the lines it was sent after the host that sent them has gone (a slow boot,
a host that gave up), and acks carry only a seq. The Link opens each connection with `ping <token>`
and takes no ack before the one that echoes its token. FakeBoard stands for the firmware's command
side (commands.Commands: one ack per line, a repeat of the last line re-acked from memory, `ping`
echoing its token); the firmware's own echo is checked on the VM at the end.
"""
import json
import threading
import time

import pytest

from host.errors import DeviceError
from host.link import client
from host.link.client import Link
from polyniod_firmware import protocol as P
from tests.test_firmware_units import acks_of, frames_of, run_on_vm


class FakeBoard:
    """The far end of one serial port, outliving the connections to it. It reads its input one line at a
    time, `delay` seconds a line (an ESP32 busy with its loop), not at all while `booting`; each line is
    run as the firmware runs it and answered with a T_ACK."""

    def __init__(self, delay=0.0):
        self.booting = False
        self.delay = delay
        self.pending = bytearray()  # bytes written to the board, not read by it yet
        self.out = bytearray()  # frames for whoever has the port open
        self.cv = threading.Condition()
        self.reader = P.CommandReader()
        self.frame_seq = 0
        self.last = None  # (line, ack) of the last command run
        self.ran = []  # (name, args) of every command run
        self.lose_next_ack = False
        self.stopped = False
        self.thread = threading.Thread(target=self.work, daemon=True)
        self.thread.start()

    def frame(self, ftype, payload):
        self.out += P.encode_frame(ftype, self.frame_seq, 0, payload)
        self.frame_seq = (self.frame_seq + 1) & 0xFFFF

    def write(self, data):
        with self.cv:
            self.pending += data
            self.cv.notify_all()

    def work(self):
        while True:
            with self.cv:
                while not self.stopped and (self.booting or b"\n" not in self.pending):
                    self.cv.wait(0.01)
                if self.stopped:
                    return
                end = self.pending.index(b"\n") + 1
                line = bytes(self.pending[:end])
                del self.pending[:end]
                for seq, name, args in self.reader.feed(line):
                    self.run(seq, name, args)
                self.cv.notify_all()
            if self.delay:
                time.sleep(self.delay)

    def idle(self, timeout=5):
        """Wait until the board has read everything and the port has taken everything it sent."""
        deadline = time.monotonic() + timeout
        while (b"\n" in self.pending or self.out) and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)

    def run(self, seq, name, args):
        if name is None:  # a bad line: args is the code
            self.answer(seq, args, b"")
            return
        line = (seq, name, tuple(args))
        if self.last and self.last[0] == line and name != "hello":  # the host's retry: the same answer
            self.answer(seq, *self.last[1])
            return
        self.ran.append((name, args))
        data = {"ping": " ".join(args).encode(), "status": json.dumps({"mode": "idle", "model": ""}).encode(),
                "hello": b""}.get(name, b"")
        self.last = (line, (P.E_OK, data))
        self.answer(seq, P.E_OK, data)
        if name == "hello":
            self.frame(P.T_HELLO, json.dumps({"proto": P.PROTOCOL_VERSION, "fw": "99.0.0"}).encode())

    def answer(self, seq, code, data):
        if self.lose_next_ack:
            self.lose_next_ack = False
            return
        self.frame(P.T_ACK, P.ack_payload(seq, code, data))


class FakePort:
    """What open_port returns: one connection to the board. Bytes the board sends while no port is open are lost."""

    def __init__(self, board):
        self.board = board
        self.timeout = 0.01
        with board.cv:
            board.out.clear()

    @property
    def in_waiting(self):
        return len(self.board.out)

    def read(self, n):
        with self.board.cv:
            if not self.board.out:
                self.board.cv.wait(self.timeout)
            data = bytes(self.board.out[:n])
            del self.board.out[:n]
            return data

    def write(self, data):
        self.board.write(bytes(data))
        return len(data)

    def flush(self):
        pass

    def close(self):
        pass


@pytest.fixture
def board(monkeypatch):
    b = FakeBoard()
    monkeypatch.setattr(client, "open_port", lambda port, baud=None: FakePort(b))
    yield b
    b.stopped = True
    b.thread.join(1)


def test_a_new_connection_never_takes_an_earlier_ones_ack(board, monkeypatch):
    """The deploy that failed on a slow-booting board: its lines were run once the board was up, while the
    next connection waited for `status`, and their acks answered it (request_json gave None). Numbering
    forced to coincide: the token, not luck, keeps them apart."""
    monkeypatch.setattr(client.secrets, "randbelow", lambda n: 0)
    board.delay = 0.01
    board.booting = True
    with Link("fake") as a:
        with pytest.raises(DeviceError, match="no answer"):
            a.request("xfer", "abort", timeout=0.05, retries=2)
    board.booting = False  # up now: it runs the first connection's lines before the second one's
    with Link("fake") as b:
        status = b.request_json("status")
        assert status == {"mode": "idle", "model": ""}
        assert b.request("ping", "x") == b"x"
    assert ("status", []) in board.ran


def test_acks_of_an_earlier_connection_with_every_seq_are_dropped(board):
    """However the earlier connection numbered its lines, none of its acks reaches the next one."""
    board.booting = True
    lines = b"".join(P.encode_command(seq, "xfer", ["abort"]) for seq in range(1, 65536, 37))
    board.write(lines)
    board.write(b"".join(P.encode_command(seq, "ping", ["stale"]) for seq in range(1, 65536, 41)))
    with Link("fake") as link:
        board.booting = False  # its answers reach the new connection, before and after it speaks
        for k in range(20):
            assert link.request("ping", str(k)) == str(k).encode()
        assert link.request_json("status")["mode"] == "idle"


def test_a_retry_is_answered_from_the_boards_memory(board):
    """The device's re-ack of a repeated line still works through the barrier: a lost ack costs a retry,
    and the command runs once."""
    with Link("fake") as link:
        link.request("ping", "first")
        board.lose_next_ack = True
        assert link.request("xfer", "abort", timeout=0.1) == b""
    assert board.ran.count(("xfer", ["abort"])) == 1


def test_a_late_ack_is_not_kept_for_a_later_command(board):
    """Within one connection: an ack that comes after its command gave up is dropped, not stored."""
    with Link("fake") as link:
        link.request("ping", "a")
        board.booting = True
        with pytest.raises(DeviceError):
            link.request("status", timeout=0.05, retries=0)
        board.booting = False  # the board catches up: the late ack comes
        board.idle()
        assert link._acks == {}
        assert link.request("ping", "b") == b"b"


def test_sends_in_flight_are_waited_for_or_forgotten(board):
    """The windowed transfer's side of the Link: wait_ack for an ack of something sent without waiting,
    None when it does not come in time, and forget() drops the acks of what was given up."""
    with Link("fake") as link:
        link.request("ping", "a")
        first, second = link.send("ping", "1"), link.send("ping", "2")
        assert link.wait_ack(first, 2) == (P.E_OK, b"1")
        link.forget([second])
        board.idle()
        assert link.take_ack(second) is None and link._acks == {}
        board.booting = True
        third = link.send("ping", "3")
        assert link.wait_ack(third, 0.05) is None
        board.booting = False
        assert link.wait_ack(third, 2) == (P.E_OK, b"3")


def test_firmware_older_than_the_host_is_named(board, monkeypatch):
    """A board whose `ping` does not echo the token cannot open a connection: the error says reflash."""
    run = FakeBoard.run

    def old_ping(self, seq, name, args):
        run(self, seq, name, [] if name == "ping" else args)

    monkeypatch.setattr(FakeBoard, "run", old_ping)
    with Link("fake") as link:
        with pytest.raises(DeviceError, match="older than this host"):
            link.request("status", timeout=0.05, retries=1)


@pytest.mark.slow
def test_opening_the_port_mid_frame_counts_no_crc_error(board):
    """Telemetry in flight when the port opens: the partial frame is synchronisation, not damage."""
    for cut in range(1, 40):
        frames = b"".join(P.encode_frame(P.T_TELEMETRY, i, i, bytes(range(16, 50))) for i in range(3))
        board.idle()
        with Link("fake") as link:
            with board.cv:
                board.out += frames[cut:]
                board.cv.notify_all()
            assert link.request("ping", "y") == b"y"
            assert link.decoder.crc_errors == link.decoder.short == 0, cut
            assert link.decoder.frames >= 3


def test_the_firmware_echoes_the_ping_token(tmp_path):
    """The real command side, on the VM: `ping <token>` answers the token, a plain `ping` nothing."""
    lines = b"".join(P.encode_command(seq, "ping", args) for seq, args in
                     ((1, ["3f2a9c0d11e4b7a6"]), (2, []), (3, ["3f2a9c0d11e4b7a6"])))
    body = "import loop, config\nr = loop.Gen0(config.load())\nr.run(60)\n"
    acks = acks_of(frames_of(run_on_vm(tmp_path, body, stdin=lines)))
    assert acks[1] == (P.E_OK, b"3f2a9c0d11e4b7a6") and acks[2] == (P.E_OK, b"") and acks[3] == acks[1]


def test_an_answer_too_big_for_an_ack_is_refused_with_E_TOO_BIG(tmp_path):
    """mtest's outputs over 1021 bytes (96 one-input rows of a 64-output model) are answered E_TOO_BIG,
    as FIRMWARE.md says; 15 rows (960 bytes) fit."""
    import numpy as np

    from host.export import quantize as Q

    rng = np.random.default_rng(1)
    layers = [{"w": rng.uniform(-1, 1, (64, 1)), "b": rng.uniform(-1, 1, 64), "act": "linear"}]
    blob = Q.export(layers, rng.normal(size=(50, 1)), [0], [1], [0] * 64, [1] * 64, ["x"], ["y%d" % i for i in range(64)], "wide")
    (tmp_path / "wide.bin").write_bytes(blob)
    lines = P.encode_command(1, "mtest", [P.encode_chunk(bytes(96))]) + P.encode_command(2, "mtest", [P.encode_chunk(bytes(15))])
    body = ("import loop, config, mlp\nr = loop.Gen0(config.load())\n"
            "r.models.model = mlp.Model(open('wide.bin', 'rb').read())\nr.run(60)\n")
    acks = acks_of(frames_of(run_on_vm(tmp_path, body, stdin=lines)))
    assert acks[1][0] == P.E_TOO_BIG and b"does not fit an ack" in acks[1][1]
    assert acks[2][0] == P.E_OK and len(acks[2][1]) == 15 * 64
