"""Deploying models onto the virtual Gen0 (real firmware, real MicroPython VM) over the live link:
parity with the host reference, refusals that leave the active model running, kills mid-deploy,
reboots, and the `host deploy` command.
"""

import contextlib
import json
import struct
import time
import zlib

import numpy as np
import pytest

from host import cli
from host.deploy import deploy, mtest, parity, read_blob, transfer
from host.errors import DeviceError, UserError
from host.export import quantize as Q
from host.export.reference import Reference
from host.firmware_files import install_into
from host.link.client import CommandError, Link
from polyniod_firmware import mlp
from polyniod_firmware import protocol as P

pytestmark = pytest.mark.slow  # every test deploys to a virtual Gen0 and waits for it (2-18 s each)

INPUTS = ["shoulder_target_deg@2", "elbow_target_deg@2", "shoulder_deg", "elbow_cmd_us@-1"]
OUTPUTS = ["shoulder_cmd_us", "elbow_cmd_us"]


def gen0_blob(act="relu", seed=0, sizes=(4, 16, 16, 2), inputs=INPUTS, outputs=OUTPUTS):
    """A random model with Gen0's I/O (hidden layers `act`, linear output)."""
    rng = np.random.default_rng(seed)
    layers = [{"w": rng.uniform(-1, 1, (o, i)), "b": rng.uniform(-1, 1, o), "act": act}
              for i, o in zip(sizes, sizes[1:])]
    layers[-1]["act"] = "linear"
    n_in, n_out = sizes[0], sizes[-1]
    return Q.export(layers, rng.normal(size=(300, n_in)), rng.normal(size=n_in) * 10, rng.uniform(10, 50, n_in),
                    np.full(n_out, 1450.0), np.full(n_out, 300.0), list(inputs), list(outputs), "test-" + act)


def reseal(blob):
    """Recompute the model id and CRC of a blob whose bytes were changed on purpose."""
    b = bytearray(blob)
    struct.pack_into("<I", b, 12, zlib.crc32(b[mlp.HEADER_SIZE:-4]))
    struct.pack_into("<I", b, len(b) - 4, zlib.crc32(b[:-4]))
    return bytes(b)


@contextlib.contextmanager
def connected(port):
    with Link(port) as link:
        link.connect()
        yield link


def running(link):
    """The active model id as the board tells it: (hello, status, telemetry byte)."""
    hello = link.connect()
    status = link.request_json("status", timeout=1.0, retries=5)  # a board just restarted, on a loaded host
    while not link.telemetry.empty():
        link.telemetry.get_nowait()
    frame = link.next_telemetry(timeout=2)
    return hello["model"], status["model"], int(frame[3]["model"])


def short_id(model_id):
    return model_id % 255 + 1


@pytest.fixture
def link(gen0):
    with connected(gen0.port) as link:
        yield link


def test_deploy_swaps_in_and_matches_the_reference_bit_for_bit(gen0, link):
    """Every activation: >= 1000 random int8 vectors through the live link equal the host reference."""
    assert running(link) == ("", "", 0)
    with pytest.raises(CommandError, match="no model"):
        link.request("mtest", P.encode_chunk(bytes(4)))
    previous = None
    for k, act in enumerate(("relu", "tanh", "sigmoid", "linear")):
        blob = gen0_blob(act, seed=k)
        ref = Reference(blob)
        summary = deploy(link, blob, ref, checks=1000)
        assert summary["model_id"] == "%08x" % ref.model_id and summary["emitter"] == "viper"
        assert summary["parity"] == {"vectors": 1000, "mismatches": 0, "first_mismatch": None}, act
        assert summary["inputs"] == INPUTS and summary["outputs"] == OUTPUTS and summary["task"] == "test-" + act
        assert summary["drives"] == ["shoulder", "elbow"]
        assert summary["previous"] == ("%08x" % Reference(previous).model_id if previous else "")
        assert running(link) == ("%08x" % ref.model_id,) * 2 + (short_id(ref.model_id),)
        assert (gen0.flash_dir / "model.bin").read_bytes() == blob
        assert not (gen0.flash_dir / "model.tmp").exists()
        if previous:
            assert (gen0.flash_dir / "model.prev").read_bytes() == previous
        previous = blob
    assert link.seq_gaps == 0 and gen0.rx_dropped == 0  # acked chunks never overran the 260-byte ring


def bad_blobs(good):
    """(name, bytes to send, protocol code, what the board says) for each way a blob can be wrong."""
    corrupted = bytearray(good)
    corrupted[40] ^= 0x10
    version = bytearray(good)
    struct.pack_into("<H", version, 4, 2)
    too_many_layers = Q.pack([mlp.Layer(1, 1, "linear", 0, 0, -128, 127, 0, 1.0, 0.25, [0], [16384], [1], b"\x01")] * 9,
                             {"task": "t", "inputs": ["shoulder_deg"], "outputs": ["shoulder_cmd_us"]},
                             [0.0], [1.0], [0.0], [1.0])
    return [
        ("truncated", good[:-9], P.E_CHECK, "truncated"),
        ("corrupted", bytes(corrupted), P.E_CHECK, "CRC mismatch"),
        ("wrong version", bytes(version), P.E_VERSION, "blob format version 2"),
        ("too many layers", too_many_layers, P.E_TOO_BIG, "9 layers"),
        ("not a blob", b"#!/bin/sh\nrm -rf /\n" * 3, P.E_ARG, "not a model blob"),
        ("unknown input", gen0_blob(inputs=["knee_deg"] + INPUTS[1:]), P.E_ARG, "no signal 'knee_deg'"),
        ("future of a measurement", gen0_blob(inputs=["shoulder_deg@3"] + INPUTS[1:]), P.E_ARG,
         "only <joint>_target_deg may look ahead"),
        ("unknown output", gen0_blob(outputs=["shoulder_cmd_us", "wrist_cmd_us"]), P.E_ARG, "output 'wrist_cmd_us'"),
        ("a pulse and something else", gen0_blob(outputs=["shoulder_cmd_us", "y"]), P.E_ARG,
         "output 'y': a model that drives joints"),
        ("two outputs, one joint", gen0_blob(outputs=["elbow_cmd_us", "elbow_cmd_us"]), P.E_ARG, "two outputs drive elbow"),
        ("bookkeeping input", gen0_blob(inputs=["busy_us"] + INPUTS[1:]), P.E_ARG, "no signal 'busy_us'"),
    ]


def test_refused_blobs_leave_the_active_model_running(gen0, link):
    good = gen0_blob("tanh", seed=5)
    ref = Reference(good)
    deploy(link, good, ref, checks=0)
    active = ("%08x" % ref.model_id,) * 2 + (short_id(ref.model_id),)
    x = np.array([[1, 2, 3, 4], [-128, 127, 0, 5]])
    for k, (name, blob, code, says) in enumerate(bad_blobs(gen0_blob("relu", seed=6))):
        with pytest.raises(CommandError, match=says) as refused:  # the board's one-line reason
            transfer(link, "model", blob)
        assert refused.value.code == code, name
        if k % 4 == 0:  # and the host's line
            with pytest.raises(DeviceError, match="keeps running model %08x" % ref.model_id):
                deploy(link, blob, Reference(good), checks=0)
        assert link.request_json("status")["model"] == active[0], name
        assert np.array_equal(mtest(link, 4, 2, x), ref.infer_q(x)), name
        assert (gen0.flash_dir / "model.bin").read_bytes() == good and not (gen0.flash_dir / "model.tmp").exists()
    # refused on the way: a transfer CRC that does not match, a blob larger than the board holds
    with pytest.raises(CommandError, match="announced") as refused:
        link.request("xfer", "begin", "model", len(good), "%08x" % (zlib.crc32(good) ^ 1))
        for offset in range(0, len(good), P.CHUNK):
            link.request("xfer", "put", offset, P.encode_chunk(good[offset:offset + P.CHUNK]))
        link.request("xfer", "end")
    assert refused.value.code == P.E_CHECK
    with pytest.raises(CommandError, match="more than the 32768") as refused:
        transfer(link, "model", bytes(40000))
    assert refused.value.code == P.E_TOO_BIG
    assert parity(link, ref, 48)["mismatches"] == 0 and running(link) == active


def test_busy_while_the_model_drives_and_mtest_checks_its_input(gen0, link):
    blob = gen0_blob(seed=2)
    deploy(link, blob, Reference(blob), checks=0)
    link.request_json("track", "hold", "deg=5,5", "duration_ms=3000")
    with pytest.raises(CommandError, match="model is driving") as busy:
        transfer(link, "model", gen0_blob(seed=3))
    assert busy.value.code == P.E_BUSY
    link.request("stop")
    with pytest.raises(CommandError, match="whole number of 4-byte input rows"):
        link.request("mtest", P.encode_chunk(bytes(6)))
    with pytest.raises(CommandError, match="canonical base64"):
        link.request("mtest", "not-base64!")


def test_a_model_that_drives_no_joints_runs_under_mtest_only(gen0, link):
    """sin(x) names no robot signal: the board takes it for mtest, track mode refuses it."""
    blob = gen0_blob("sigmoid", sizes=(1, 16, 16, 16, 1), inputs=["x"], outputs=["y"])
    summary = deploy(link, blob, Reference(blob), checks=300)
    assert summary["drives"] == [] and summary["parity"]["mismatches"] == 0
    with pytest.raises(CommandError, match="drives no joints") as refused:
        link.request("track", "hold")
    assert refused.value.code == P.E_STATE


def test_names_too_long_for_an_ack_are_counted(gen0, link):
    inputs = [f"shoulder_target_deg@{k}" for k in range(1, 49)]
    blob = gen0_blob(sizes=(48, 8, 2), inputs=inputs)
    summary = deploy(link, blob, Reference(blob), checks=48)
    assert summary["inputs"] == 48 and summary["outputs"] == 2 and summary["drives"] == ["shoulder", "elbow"]
    assert summary["parity"]["mismatches"] == 0 and running(link)[0] == "%08x" % Reference(blob).model_id


def test_killed_mid_deploy_the_board_restarts_with_the_previous_model(make_sim):
    gen0 = make_sim(preload=True)
    old, new = gen0_blob(seed=10), gen0_blob(seed=11)
    with connected(gen0.port) as link:
        deploy(link, old, Reference(old), checks=0)
        link.request("xfer", "begin", "model", len(new), "%08x" % zlib.crc32(new))
        for offset in range(0, 5 * P.CHUNK, P.CHUNK):
            link.request("xfer", "put", offset, P.encode_chunk(new[offset:offset + P.CHUNK]))
        gen0.kill()  # the cable is pulled mid-transfer
    gen0.start()
    assert gen0.wait_ready(20)
    with connected(gen0.port) as link:
        assert running(link)[0] == "%08x" % Reference(old).model_id
        assert parity(link, Reference(old), 48)["mismatches"] == 0


@pytest.mark.parametrize("state", ["tmp written", "between the renames"])
def test_killed_while_storing_the_board_runs_the_previous_model(make_sim, tmp_path, state):
    """The flash as a kill leaves it at each step of the store: boot runs the previous model."""
    old, new = gen0_blob(seed=12), gen0_blob(seed=13)
    flash = tmp_path / "flash"
    install_into(flash)
    (flash / "model.tmp").write_bytes(new)
    (flash / ("model.bin" if state == "tmp written" else "model.prev")).write_bytes(old)
    gen0 = make_sim(flash_dir=flash)
    with connected(gen0.port) as link:
        assert running(link)[0] == "%08x" % Reference(old).model_id
        status = link.request_json("status")
        assert status["model_note"] == ("" if state == "tmp written" else "model.bin missing; running model.prev")
        assert parity(link, Reference(old), 48)["mismatches"] == 0
        summary = deploy(link, new, Reference(new), checks=48)  # and the next deploy completes the store
        assert summary["parity"]["mismatches"] == 0
    assert (flash / "model.bin").read_bytes() == new and (flash / "model.prev").read_bytes() == old


def test_a_corrupt_model_file_falls_back_to_the_previous_one(make_sim, tmp_path):
    old = gen0_blob(seed=14)
    flash = tmp_path / "flash"
    install_into(flash)
    (flash / "model.prev").write_bytes(old)
    (flash / "model.bin").write_bytes(old[:-1] + bytes([old[-1] ^ 1]))
    gen0 = make_sim(flash_dir=flash)
    with connected(gen0.port) as link:
        assert running(link)[0] == "%08x" % Reference(old).model_id
        assert "model.bin refused (CRC mismatch" in link.request_json("status")["model_note"]


def test_the_board_boots_with_the_last_deployed_model(gen0, link):
    first, last = gen0_blob(seed=20), gen0_blob("sigmoid", seed=21)
    for blob in (first, last):
        deploy(link, blob, Reference(blob), checks=0)
    want = ("%08x" % Reference(last).model_id,) * 2 + (short_id(Reference(last).model_id),)
    resets = gen0.hard_resets
    link.request("reset")  # machine.reset(): a hard reset
    deadline = time.monotonic() + 20
    while gen0.hard_resets == resets and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gen0.hard_resets == resets + 1
    assert running(link) == want
    link.send_raw(b"\x03")  # Ctrl-C: the firmware stops at the REPL; connect() soft-resets (Ctrl-D) into main.py
    time.sleep(1.0)
    soft = gen0.soft_resets
    assert running(link) == want and gen0.soft_resets == soft + 1
    assert parity(link, Reference(last), 48)["mismatches"] == 0


def test_a_windowed_transfer_stores_the_exact_bytes(gen0, link):
    """Records in flight up to the board's window, every byte value (the link's control bytes escaped)."""
    data = bytes(range(256)) * 12 + b"\x03\x0a\x10\x01\x04" * 200
    seen = []
    ack = transfer(link, "file:all.bin", data, progress=lambda acked, total: seen.append((acked, total)))
    assert ack == {"slot": "file:all.bin", "size": len(data), "crc": "%08x" % zlib.crc32(data)}
    assert (gen0.flash_dir / "all.bin").read_bytes() == data
    assert seen[-1] == (len(data), len(data)) and [a for a, _ in seen] == sorted(a for a, _ in seen)
    assert gen0.rx_dropped == 0 and link.request_json("status")["rx"]["crc"] == 0


def test_records_a_full_ring_dropped_are_sent_again(gen0, link):
    """A window larger than the board can drain at 20 Hz (576 bytes a tick reach a 260-byte ring): bytes are
    dropped, the damaged records refused, and going back to the board's offset still lands the exact bytes."""
    link.request("rate", 20)
    data = bytes((i * 131 + 7) & 0xFF for i in range(3000))
    assert transfer(link, "file:dropped.bin", data, window=3000)["size"] == len(data)
    assert (gen0.flash_dir / "dropped.bin").read_bytes() == data
    assert gen0.rx_dropped > 0 and link.request_json("status")["rx"]["crc"] > 0


def abort_at(link, fraction):
    """A progress callback that, past `fraction` of the data, sends `xfer abort` (another host's, say)."""
    def progress(acked, total):
        if acked >= fraction * total and not progress.done:
            progress.done = True
            link.request("xfer", "abort")
    progress.done = False
    return progress


def test_a_refusal_mid_transfer_keeps_the_active_model(gen0, link):
    old, new = gen0_blob(seed=50), gen0_blob(seed=51)
    deploy(link, old, Reference(old), checks=0)
    with pytest.raises(DeviceError, match="no transfer in progress") as refused:
        deploy(link, new, Reference(new), checks=0, progress=abort_at(link, 0.3))
    assert "keeps running model %08x" % Reference(old).model_id in str(refused.value)
    status = link.request_json("status")
    assert status["model"] == "%08x" % Reference(old).model_id and status["transfer"] is None
    assert (gen0.flash_dir / "model.bin").read_bytes() == old and not (gen0.flash_dir / "model.tmp").exists()
    assert parity(link, Reference(old), 48)["mismatches"] == 0


def test_ctrl_c_stops_the_firmware_mid_transfer(gen0, link):
    """The records never carry 0x03, so a Ctrl-C reaches the board as one: the firmware stops (a
    KeyboardInterrupt), the transfer fails, and the board started again runs its previous model."""
    old, new = gen0_blob(seed=52), gen0_blob(seed=53)
    deploy(link, old, Reference(old), checks=0)

    def ctrl_c(acked, total):
        if acked >= total // 3 and not ctrl_c.sent:
            ctrl_c.sent = True
            link.send_raw(b"\x03")
    ctrl_c.sent = False
    with pytest.raises(DeviceError):
        transfer(link, "model", new, progress=ctrl_c)
    assert ctrl_c.sent and "KeyboardInterrupt" in link.device_text()
    assert running(link)[0] == "%08x" % Reference(old).model_id  # connect() soft-resets into main.py
    assert (gen0.flash_dir / "model.bin").read_bytes() == old


def test_read_blob_checks_locally(tmp_path):
    blob = gen0_blob()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.bin").write_bytes(blob)
    assert read_blob(tmp_path / "m")[0] == blob
    with pytest.raises(UserError, match="has no model.bin"):
        read_blob(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        read_blob(tmp_path / "nope.bin")
    for name, data, code, says in bad_blobs(blob)[:5]:
        (tmp_path / "bad.bin").write_bytes(data)
        with pytest.raises(UserError, match=says):
            read_blob(tmp_path / "bad.bin")


def test_host_deploy_command(gen0, tmp_path, capsys):
    model = tmp_path / "models" / "nominal"
    model.mkdir(parents=True)
    blob = gen0_blob("tanh", seed=30)
    (model / "model.bin").write_bytes(blob)
    model_id = "%08x" % Reference(blob).model_id

    assert cli.main(["deploy", str(model), "--port", gen0.port, "--checks", "100"]) == 0
    out = capsys.readouterr().out
    assert "bytes" in out and "KiB/s" in out and "% of the link's limit" in out
    assert "parity: 100/100 random int8 vectors bit for bit" in out and f"model {model_id} (test-tanh, viper)" in out
    assert "drives shoulder, elbow" in out
    assert "limit at 115200 baud" in out

    (tmp_path / "other.bin").write_bytes(gen0_blob("relu", seed=31))
    assert cli.main(["deploy", str(tmp_path / "other.bin"), "--port", gen0.port, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] and summary["previous"] == model_id and summary["parity"]["mismatches"] == 0
    assert summary["bytes"] == (tmp_path / "other.bin").stat().st_size
    assert summary["limit_seconds"] == pytest.approx(summary["bytes"] * 10 / 115200, abs=1e-3)
    assert 0 < summary["link_efficiency"] < 1

    (tmp_path / "knee.bin").write_bytes(gen0_blob(inputs=["knee_deg"] + INPUTS[1:]))
    assert cli.main(["deploy", str(tmp_path / "knee.bin"), "--port", gen0.port]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no signal 'knee_deg'" in err[0] and f"keeps running model {summary['model_id']}" in err[0]

    (tmp_path / "cut.bin").write_bytes(blob[:-3])
    assert cli.main(["deploy", str(tmp_path / "cut.bin"), "--port", "/dev/null-no-port"]) == 1  # refused before the port
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cut.bin is not a model this firmware runs (E_CHECK): truncated" in err[0]
    assert cli.main(["deploy", str(model), "--port", str(tmp_path / "no-such-port")]) == 1
    assert "no serial port" in capsys.readouterr().err


def test_the_shipped_sin_model_on_the_board_approximates_sin(gen0, link):
    """models/sin deployed over the link: the board's int8 outputs stay within 0.06 of sin(x) on [-pi, pi]."""
    from pathlib import Path

    blob, reference = read_blob(Path(__file__).resolve().parent.parent / "models" / "sin")
    summary = deploy(link, blob, reference, checks=64)
    assert summary["parity"]["mismatches"] == 0
    x = np.linspace(-np.pi, np.pi, 201)[:, None]
    y = reference.dequantize_outputs(mtest(link, 1, 1, reference.quantize_inputs(x)))[:, 0]
    error = np.abs(y - np.sin(x[:, 0]))
    assert error.max() < 0.06, error.max()
    assert np.sqrt(np.mean(error ** 2)) < 0.03


def test_bad_arguments_are_refused_before_the_board_is_touched(gen0, tmp_path, capsys):
    """`--checks -1` once failed after the model was swapped in, with a traceback: now nothing reaches the board."""
    model = tmp_path / "m.bin"
    model.write_bytes(gen0_blob("relu", seed=40))
    for args in (["--checks", "-1"], ["--checks", str(1 << 30)], ["--baud", "-1"], ["--baud", "0"]):
        assert cli.main(["deploy", str(model), "--port", gen0.port, *args]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {args[0]} {args[1]}: give "), err
    with connected(gen0.port) as link:
        assert running(link) == ("", "", 0)  # no model went in
    with pytest.raises(UserError, match="--checks -1"), connected(gen0.port) as link:
        deploy(link, *read_blob(model), checks=-1)
    with connected(gen0.port) as link:
        assert running(link) == ("", "", 0)
