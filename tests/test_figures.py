"""Figures and plots that explain themselves (issue 11): replay offline by default, robust loop statistics
with units and the largest gap named, errors by joint with units, the train warning, the CPU model beside
the bench's µs, and plots with units, titles and the expected panels. No wall-clock assertions."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from host import cli
from host.bench import device_us, table
from host.evaluate import plot as plot_eval
from host.predict import ModelRun
from host.replay import replay
from host.sessions.plot import plot
from host.sessions.stats import activities
from host.sessions import load
from host.train.checkpoint import plot_curves
from host.train.pipeline import losing_to_linear, train
from tests.test_replay_model import recorded  # noqa: F401 -- a steps session on a virtual Gen0 and a tiny model


@pytest.fixture(scope="module")
def session_file(recorded):
    return recorded[0]


@pytest.fixture(scope="module")
def model_dir(recorded):
    return recorded[1]


def png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_replay_is_offline_by_default(session_file, monkeypatch):
    def no_sleep(seconds):
        raise AssertionError(f"replay slept {seconds} s by default")

    monkeypatch.setattr("host.replay.time.sleep", no_sleep)
    played = replay(load(session_file))["played"]
    assert played["speed"] == "max" and played["slept_s"] == 0 and played["frames"] > 0


@pytest.mark.slow
def test_loop_statistics_are_robust_have_units_and_name_the_largest_gap(session_file, capsys):
    assert cli.main(["replay", str(session_file), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["played"]["speed"] == "max"
    iv = stats["interval_us"]
    assert iv["unit"] == "us" and iv["p50"] == pytest.approx(iv["nominal"], rel=0.02), iv
    assert iv["p50"] <= iv["p99"] <= iv["max"]
    gap = stats["largest_gap"]
    assert gap["ms"] == pytest.approx(iv["max"] / 1000, abs=0.1) and gap["at_s"] >= 0
    hello = any(f["bytes"] > 3000 for f in gap["frames"])  # the hello the host asks for at connect (~330 ms),
    assert gap["why"], gap  # when the session has one; else what the board sent in the gap, if anything
    assert not hello or ("hello" in gap["why"] and "baud" in gap["why"]), gap

    assert cli.main(["replay", str(session_file)]) == 0
    text = capsys.readouterr().out
    assert "device loop interval (us)" in text and " p50 " in text and " p99 " in text, text
    assert f"largest gap {gap['ms']:.0f} ms at t=" in text and "as fast as possible" in text, text


def test_help_says_replay_is_offline_and_fast_by_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["replay", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "as fast as possible" in text and "1: real time" in text, text


@pytest.mark.slow
def test_model_replay_says_where_the_largest_error_is(session_file, model_dir, capsys):
    assert cli.main(["replay", str(session_file), "--model", str(model_dir), "--json"]) == 0
    outputs = json.loads(capsys.readouterr().out)["model"]["outputs"]
    for name, o in outputs.items():
        at = o["int8_max_at"]
        assert at["doing"] == "steps" and 0 <= at["t_s"] and at["row"] >= 0, o
    assert cli.main(["replay", str(session_file), "--model", str(model_dir)]) == 0
    text = capsys.readouterr().out
    assert "shoulder_cmd_us: int8 max error" in text and "during steps" in text, text


@pytest.mark.slow
def test_train_warns_when_the_model_loses_to_the_linear_fit(tmp_path, capsys):
    """One epoch at a vanishing learning rate: the net is still near its init, far worse than a line through sin."""
    metrics = train("sin", out=tmp_path / "m", progress=False, epochs=1, lr=1e-9)
    assert metrics["warnings"] and "worse than the linear fit" in metrics["warnings"][0]
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["warnings"] == metrics["warnings"]
    assert "warning: y: the model's validation RMSE" in capsys.readouterr().err

    joints = {"outputs": ["shoulder_cmd_us", "elbow_cmd_us"], "val_rmse": {"shoulder_cmd_us": 40, "elbow_cmd_us": 59.8},
              "int8": {"val_rmse": {"shoulder_cmd_us": 41, "elbow_cmd_us": 60}},
              "baseline_rmse": {"linear": {"shoulder_cmd_us": 56.1, "elbow_cmd_us": 53.8}}}
    lines = losing_to_linear(joints)
    assert len(lines) == 1 and lines[0].startswith("elbow pulse:") and "53.8 µs" in lines[0], lines


def test_models_names_joints_and_units(tmp_path, capsys):
    d = tmp_path / "mine"
    d.mkdir()
    errors = {"shoulder_cmd_us": 56.1, "elbow_cmd_us": 53.5}
    (d / "metrics.json").write_text(json.dumps({
        "task": "inverse", "inputs": ["a"] * 6, "outputs": list(errors), "config": {"hidden": [32, 32]},
        "val_rmse": errors, "int8": {"val_rmse": errors}, "baseline_rmse": {"linear": {k: 50.0 for k in errors}},
        "sizes": {"blob_bytes": 2108}, "warnings": ["elbow pulse: worse than the linear fit"]}))
    assert cli.main(["models", "--dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "shoulder 56.1 µs, elbow 53.5 µs" in text and "shoulder 50 µs, elbow 50 µs" in text, text
    assert "warning: mine: elbow pulse: worse than the linear fit" in text, text


def test_bench_names_the_cpu_model_beside_every_device_time():
    env = {"date": "now", "port": "/dev/pts/1", "baud": 115200, "firmware": "0.2.0", "protocol": 1, "board_id": "b",
           "micropython": None, "robot": "gen0", "board": "esp32", "host": "0", "python": "3", "pyserial": "3",
           "numpy": "2", "os": "linux", "cpu": "esp32 x25 (x25 bytecode, x41.6667 GC at 240 MHz)",
           "us": "an ESP32's", "us_tag": "ESP32 us, virtual Gen0"}
    figures = {"environment": env, "robot": {"mode": "idle", "rate_hz": 100, "telemetry_every": 1},
               "loop": {"note": "no telemetry", "stages": {"sense": {"mean_us": 10, "max_us": 20},
                                                          "tick": {"mean_us": 30, "max_us": 40}}, "stage_ticks": 9},
               "inference": {"model": "b31118e5", "emitter": "viper", "us_per_inference": 23.0,
                             "us_per_inference_median": 24.0, "calls": 5, "n": 5000},
               "transfer": {"what": "x", "bytes": 10, "seconds": 1.0, "limit_seconds": 0.5, "efficiency": 0.5,
                            "kib_per_s": 0.01}}
    rows = dict(table(figures))
    assert "esp32 x25 CPU model" in rows["inference"] and "esp32 x25 CPU model" in rows["stages"], rows
    host = {**env, "cpu": "host (the VM at this host's speed)", "us_tag": "VM's own speed, not an ESP32's"}
    assert device_us(host).startswith("host CPU")
    assert device_us({**env, "cpu": "the board itself (measured µs)", "us_tag": "measured on the board"}) == \
        "measured on the board"


@pytest.mark.slow
def test_session_plot_has_a_panel_per_quantity_with_units(session_file, tmp_path):
    session = load(session_file)
    fig = plot(session, tmp_path / "s.png", title="a test")
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["shoulder angle (deg)", "elbow angle (deg)", "accel (g)", "gyro (deg/s)"], labels
    assert "session steps" in fig._suptitle.get_text() and "a test" in fig._suptitle.get_text()
    assert all(not ax.get_legend().get_frame_on() for ax in fig.axes)  # outside the axes, no box over the data
    assert "steps" in [label for _, label in activities(session)]
    assert fig.axes[-1].get_xlabel().startswith("time")
    width, height = png_size(tmp_path / "s.png")
    assert width >= 1000 and height >= 600


@pytest.mark.slow
def test_model_plot_adds_a_residual_panel_per_joint(session_file, model_dir, tmp_path):
    session = load(session_file)
    run = ModelRun(model_dir, session)
    fig = plot(session, tmp_path / "m.png", predicted=run.predicted(), title=run.title())
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "shoulder error (µs)" in labels and "elbow error (µs)" in labels, labels
    assert f"{run.reference.model_id:08x}" in fig._suptitle.get_text()


@pytest.mark.slow
def test_training_curves_are_titled_and_in_the_outputs_unit(model_dir, tmp_path):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    history = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "qat": [False, False],
               "best_epoch": 2, "train_rmse": [[1.0, 1.0], [0.7, 0.6]], "val_rmse": [[1.1, 1.0], [0.8, 0.7]]}
    fig = plot_curves(history, tmp_path / "c.png", metrics)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "RMSE (µs)" and "inverse" in ax.get_title(), (ax.get_ylabel(), ax.get_title())
    assert png_size(tmp_path / "c.png") == (1000, 600)
    old = plot_curves({**history, "train_rmse": [], "val_rmse": []}, tmp_path / "n.png", metrics)
    assert "normalised" in old.axes[0].get_ylabel()  # a history from before per-output errors


def test_eval_plot_has_units_and_one_legend(tmp_path):
    t = np.arange(100) / 100
    runs = [{"trajectory": "sines", "controller": c, "t": t, "targets": {"shoulder": np.sin(t)},
             "measured": {"shoulder": np.sin(t) + k}, "joints": {"shoulder": {"rmse_deg": k + 0.5}}}
            for k, c in enumerate(("naive", "model"))]
    summary = {r["controller"]: {"joints": {"shoulder": {"rmse_deg": r["joints"]["shoulder"]["rmse_deg"]}}} for r in runs}
    fig = plot_eval({"runs": runs, "summary": summary}, tmp_path / "e.png")
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["shoulder angle (deg)", "shoulder RMSE (deg)"], labels
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    assert "held-out trajectories" in fig._suptitle.get_text()
