"""`host monitor --foxglove`: a Foxglove WebSocket client (`websockets`) on loopback gets the board's telemetry live, on the
channels and schemas of an MCAP export, frame for frame what `host collect` records.

"What collect records" at the same time: the port is the monitor's alone, so the monitor records too
(--record: collect's own Recorder, every byte as read) and that session is exported to MCAP by `host
export`; each message served must equal the export's /telemetry message of the same seq -- the device's
unwrapped time, seq, segment and every field in its unit, decoded from JSON -- and each advertised schema
the export's. Nothing here is timed: the client waits for the server and reads until the monitor ends.
"""

import json
import socket
import struct
import subprocess
import sys
import time

import pytest

from tests.test_export import export, one_line_error, read_mcap

websockets_client = pytest.importorskip("websockets.sync.client")
pytest.importorskip("foxglove")

# foxglove-sdk 0.30's server speaks "foxglove.sdk.v1" (the successor of "foxglove.websocket.v1", whose
# messages it keeps: advertise, subscribe, binary 0x01 message data) and refuses a client offering only the old name
SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(url, proc, wait_s=60):
    """The client, once the monitor's server is up (it starts before the board is opened)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return websockets_client.connect(url, subprotocols=SUBPROTOCOLS, open_timeout=5)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no Foxglove server at {url}: {proc.communicate()[1]}")
            time.sleep(0.1)


def served(ws):
    """({topic: advertised channel}, {topic: [(receive timestamp ns, JSON message)]}) until the server goes."""
    channels, by_id, got = {}, {}, {}
    for data in iter_until_closed(ws):
        if isinstance(data, str):
            msg = json.loads(data)
            if msg["op"] == "advertise":
                new = [c for c in msg["channels"] if c["topic"] not in channels]
                for c in new:
                    channels[c["topic"]] = c
                    by_id[c["id"]] = c["topic"]
                ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": c["id"], "channelId": c["id"]}
                                                                          for c in new]}))
            continue
        assert data[0] == 0x01, f"binary opcode {data[0]}"
        sub, stamp = struct.unpack_from("<IQ", data, 1)
        got.setdefault(by_id[sub], []).append((stamp, json.loads(data[13:])))
    return channels, got


def iter_until_closed(ws):
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            yield ws.recv()
    except ConnectionClosed:
        return


def test_a_websocket_client_gets_what_collect_records(gen0, tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "host", "monitor", "--port", gen0.port, "--foxglove",
                             "--listen", f"127.0.0.1:{port}", "--record", "live", "--out", str(tmp_path),
                             "--duration", "4", "--interval", "0.5", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        with connect(f"ws://127.0.0.1:{port}", proc) as ws:
            assert ws.subprotocol in SUBPROTOCOLS
            channels, got = served(ws)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"serving Foxglove on ws://127.0.0.1:{port}" in err
    assert json.loads(out.splitlines()[-1])["frames_per_s"] > 0  # the terminal view went on

    code, _, stderr = export(tmp_path / "live.session", "--format", "mcap", "--out", tmp_path / "live.mcap")
    assert code == 0, stderr
    _, messages, _ = read_mcap(tmp_path / "live.mcap")
    recorded = {c.topic: (c, s) for s, c, _ in messages}
    assert set(channels) == set(recorded) | {"/commands", "/log", "/markers"} == {"/telemetry", "/commands", "/log",
                                                                                   "/markers"}
    for topic, (channel, schema) in recorded.items():  # one layout for both: the same topics, schemas, encoding
        live = channels[topic]
        assert (live["encoding"], live["schemaName"], live["schemaEncoding"]) == ("json", schema.name, schema.encoding)
        assert json.loads(live["schema"]) == json.loads(schema.data)

    frames = {json.loads(m.data)["seq"]: (m.log_time, json.loads(m.data)) for _, c, m in messages
              if c.topic == "/telemetry"}
    live = got["/telemetry"]
    assert len(live) >= 20, f"{len(live)} telemetry messages served"
    seqs = [msg["seq"] for _, msg in live]
    assert seqs == sorted(set(seqs)) and set(seqs) <= set(frames)
    for stamp, msg in live:
        log_time, want = frames[msg["seq"]]
        assert msg == want  # device time, seq, segment, every field: the values the export holds
        assert isinstance(msg["seq"], int) and type(msg["segment"]) is int
        # receive time: the read that brought the frame; a session stamps a window of reads by its last one
        assert stamp <= log_time


@pytest.mark.parametrize("listen, says", [
    ("8765", "give ADDRESS:PORT"), ("localhost:8765", "give ADDRESS:PORT"), ("127.0.0.1:0", "give ADDRESS:PORT"),
    ("127.0.0.1:70000", "give ADDRESS:PORT"), ("127.0.0.1:http", "give ADDRESS:PORT"), ("", "give ADDRESS:PORT"),
])
def test_bad_listen_values_are_one_line(listen, says):
    code, out, err = monitor("--foxglove", "--listen", listen)
    assert says in one_line_error(code, out, err)


def test_listen_without_foxglove_is_one_line():
    code, out, err = monitor("--listen", "127.0.0.1:8765")
    assert "add --foxglove" in one_line_error(code, out, err)


def test_without_foxglove_sdk_it_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "foxglove", None)
    code, out, err = monitor("--foxglove", "--listen", f"127.0.0.1:{free_port()}")
    assert "foxglove-sdk" in one_line_error(code, out, err) and "pip install" in err


def test_an_address_in_use_is_one_line_before_the_board_is_opened():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        code, out, err = monitor("--foxglove", "--listen", f"127.0.0.1:{s.getsockname()[1]}")
    assert "cannot serve on 127.0.0.1:" in one_line_error(code, out, err)


def monitor(*args):
    """`host monitor ARGS` in this process, on a port that is no board (reached only if the arguments pass)."""
    import contextlib
    import io

    from host.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["monitor", "--port", "/nonexistent/port", "--duration", "1", *args])
    return code, out.getvalue(), err.getvalue()
