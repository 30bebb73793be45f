"""`host replay SESSION --model MODEL`: a model over a recorded session, int8 bit for bit the host
reference (= the device), float from its checkpoint, errors that match a numpy recomputation --
with a model trained here on the virtual Gen0 and with the shipped models/gen0-default."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from polyniod_firmware import protocol as P

from host import cli
from host.collect import collect
from host.export.quantize import export
from host.export.reference import Reference
from host.predict import ModelRun
from host.sessions import SessionWriter, load
from host.sessions.store import BYTES, read_records
from host.sim import VirtualGen0
from host.train import checkpoint as ckpt
from host.train.dataset import session_rows
from host.train.fit import predict
from host.train.pipeline import train
from tests.test_firmware_units import RATE

pytestmark = pytest.mark.slow  # the module's recording and model take a virtual Gen0 run and a training

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """20 s of `steps` on a fresh virtual Gen0 (seed 0, virtual clock: ~2 s), and a tiny inverse model trained on it."""
    out = tmp_path_factory.mktemp("replay-model")
    gen0 = VirtualGen0(preload=True, seed=0, speed=0)
    gen0.start()
    try:
        assert gen0.wait_ready(30), gen0.failed
        summary = collect(gen0.port, program="steps", seed=3, duration=20, name="steps", out=out, progress=False,
                          say=lambda msg: None)
    finally:
        gen0.stop()
    train("inverse", [summary["session"]], out=out / "tiny", epochs=3, hidden=(16,), progress=False)
    return Path(summary["session"]), out / "tiny"


def replay_json(capsys, *argv):
    assert cli.main(["replay", *map(str, argv), "--max", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def error_line(capsys, *argv):
    assert cli.main(["replay", *map(str, argv), "--max"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: "), err
    return err


def test_int8_is_the_reference_float_the_checkpoint_and_the_figures_recompute(recorded, capsys, tmp_path):
    path, model = recorded
    png = tmp_path / "replay.png"
    stats = replay_json(capsys, path, "--model", model, "--plot", png)
    m = stats["model"]
    ref = Reference((model / "model.bin").read_bytes())
    assert m["task"] == "inverse" and m["model_id"] == f"{ref.model_id:08x}" and m["float"]
    session = load(path)
    x, y, anchors = session_rows(session, ref.inputs, ref.outputs)["all"]
    assert m["rows"]["used"] == len(x) > 15 * RATE and m["rows"]["dropped"]["not_driven"] >= 1  # 20 s; it boots limp
    int8 = ref.dequantize_outputs(ref.infer_q(ref.quantize_inputs(x)))
    run = ModelRun(model, session)
    assert np.array_equal(run.int8, int8)  # bit for bit what the device computes
    checkpoint = ckpt.load(model)
    n = {k: np.asarray(v) for k, v in checkpoint["norm"].items()}
    flt = predict(ckpt.build(checkpoint), (x - n["in_mean"]) / n["in_std"]) * n["out_std"] + n["out_mean"]
    for i, name in enumerate(ref.outputs):
        o = m["outputs"][name]
        assert o["column"] == name and o["unit"] == "us"
        for key, pred in (("int8", int8[:, i]), ("float", flt[:, i])):
            assert np.isfinite(o[key]["rmse"])
            assert o[key]["rmse"] == pytest.approx(np.sqrt(np.mean((pred - y[:, i]) ** 2)), abs=1e-4)
            assert o[key]["max_abs"] == pytest.approx(np.abs(pred - y[:, i]).max(), abs=1e-4)
        assert o["int8_vs_float"]["rmse"] == pytest.approx(np.sqrt(np.mean((int8[:, i] - flt[:, i]) ** 2)), abs=1e-4)
        assert o["int8_vs_float"]["rmse"] < 0.1 * o["int8"]["rmse"], o  # quantisation is not what the error is
        # the seam replay() scores: the int8 predictions as a session column, at each row's anchor
        assert stats["model_rmse"][name] == o["int8"]["rmse"]
        column = run.predict(session.columns)[name]
        assert np.array_equal(column[anchors], int8[:, i]) and np.isnan(np.delete(column, anchors)).all()
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24])[0] >= 800


def test_a_bare_blob_gives_int8_and_says_float_is_unavailable(recorded, capsys):
    path, model = recorded
    whole = replay_json(capsys, path, "--model", model)["model"]
    bare = replay_json(capsys, path, "--model", model / "model.bin")["model"]
    assert not bare["float"] and "checkpoint" in bare["float_unavailable"]
    for name, o in bare["outputs"].items():
        assert o["float"] is None and o["int8_vs_float"] is None
        assert o["int8"] == whole["outputs"][name]["int8"]


def test_the_shipped_model_predicts_a_fresh_recording_as_its_metrics_say(recorded, capsys):
    path, _ = recorded
    m = replay_json(capsys, path, "--model", MODELS / "gen0-default")["model"]
    assert m["model_id"] == json.loads((MODELS / "gen0-default" / "metrics.json").read_text())["model_id"]
    for name, o in m["outputs"].items():  # metrics.json: ~105 us on its held-out session
        assert 50 < o["int8"]["rmse"] < 250 and 50 < o["float"]["rmse"] < 250, (name, o)
        assert o["int8_vs_float"]["rmse"] < 15, (name, o)


def short_copy(session, frames, out):
    """A session file with the first `frames` telemetry frames of `session`, cut at a frame's last byte."""
    records, _ = read_records(session.path.read_bytes())
    decoder, seen = P.FrameDecoder(), 0
    with SessionWriter(out, "short", session.header) as writer:
        for kind, host_time, data in records:
            if kind != BYTES:
                continue
            for end in range(1, len(data) + 1):
                seen += sum(f[0] == P.T_TELEMETRY for f in decoder.feed(bytes(data[end - 1:end])))
                if seen == frames:
                    writer.append_bytes(host_time, bytes(data[:end]))
                    return writer.path
            writer.append_bytes(host_time, bytes(data))
    raise AssertionError(f"{session.path} holds fewer than {frames} telemetry frames")


def test_bad_inputs_are_one_line_errors(recorded, capsys, tmp_path):
    path, model = recorded
    session = load(path)
    assert "x, y" in error_line(capsys, path, "--model", MODELS / "sin")  # fields the session does not log
    wrist = tmp_path / "wrist.bin"
    wrist.write_bytes(export([{"w": np.ones((1, 2)), "b": np.zeros(1), "act": "linear"}],
                             np.random.default_rng(0).normal(size=(50, 2)), np.zeros(2), np.ones(2), np.zeros(1),
                             np.ones(1), ["wrist_deg", "wrist_deg@-1"], ["wrist_cmd_us"], "inverse"))
    assert "drives joints wrist" in error_line(capsys, path, "--model", wrist)
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes((model / "model.bin").read_bytes()[:-9])
    assert "is not a model this firmware runs" in error_line(capsys, path, "--model", corrupt)
    assert "does not exist" in error_line(capsys, path, "--model", tmp_path / "none.bin")
    first_driven = int(np.flatnonzero(session.columns["shoulder_cmd_us"] > 0)[0])
    ahead = max(int(f.split("@+")[1]) for f in json.loads((model / "metrics.json").read_text())["inputs"] if "@+" in f)
    short = short_copy(session, first_driven + ahead + 1, tmp_path)  # a row spans ahead + 2 ticks
    assert len(load(short)) == first_driven + ahead + 1
    err = error_line(capsys, short, "--model", model)
    assert "gives model" in err and "no rows" in err and "record a longer session" in err
    assert "drop --to-port" in error_line(capsys, path, "--model", model, "--to-port", "/dev/null")
