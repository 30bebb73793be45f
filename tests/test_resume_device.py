"""`host train --resume` on any device (issue 12, item 6): a model trained on a GPU resumes on a machine
without one. The device is a choice of the run, like --quiet: the checkpoint keeps none, it loads onto the
CPU whatever device its tensors were saved from, and --resume takes --device. No GPU here: the CUDA
checkpoint is faked, its tensors tagged "cuda:0" as torch.save tags a GPU's (plain torch.load refuses it
on this machine, as it would a real one), its config saying device "cuda" as this version's used to.
"""

import json
from unittest import mock

import pytest
import torch

from host import cli
from host.train import checkpoint as ckpt
from host.train.pipeline import resume, train


def as_if_trained_on_cuda(model_dir):
    """Rewrite model_dir's checkpoint as a GPU run of the old version wrote it."""
    checkpoint = ckpt.load(model_dir)
    checkpoint["config"]["device"] = "cuda"
    with mock.patch("torch.serialization.location_tag", lambda storage: "cuda:0"):
        (model_dir / "checkpoint.pt").write_bytes(ckpt.to_bytes(checkpoint))
    return checkpoint


@pytest.fixture(scope="module")
def cuda_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "sin"
    train("sin", out=out, epochs=2, progress=False)
    before = as_if_trained_on_cuda(out)
    if not torch.cuda.is_available():  # the fake is a real one: this machine cannot load it as saved
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(out / "checkpoint.pt", weights_only=True)
    return out, before


def copied(model_dir, to):
    to.mkdir()
    for name in ckpt.FILES:
        (to / name).write_bytes((model_dir / name).read_bytes())
    return to


def tensors_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_model_trained_with_no_device_setting_keeps_none(tmp_path):
    m = train("xor", out=tmp_path / "x", epochs=1, progress=False)
    assert "device" not in m["config"] and m["timings"]["device"] == "cpu"
    assert "device" not in ckpt.load(tmp_path / "x")["config"]
    assert "device" not in json.loads((tmp_path / "x" / "metrics.json").read_text())["config"]


def test_a_cuda_checkpoint_loads_on_the_cpu(cuda_model):
    out, before = cuda_model
    loaded = ckpt.load(out)
    assert all(v.device.type == "cpu" for v in loaded["state_dict"].values())
    assert tensors_equal(loaded["state_dict"], before["state_dict"])
    model = ckpt.build(loaded)
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_resume_of_a_cuda_model_trains_on_the_cpu_and_keeps_no_device(cuda_model, tmp_path):
    out, before = cuda_model
    copy = copied(out, tmp_path / "sin")
    again = resume(copy, epochs=2, progress=False)  # default: cpu, not the "cuda" the old config says
    assert again["epochs_run"] == 4 and again["timings"]["device"] == "cpu"
    assert again["config"] == {k: v for k, v in before["config"].items() if k != "device"} | {"epochs": 2}
    # written from the CPU: every tensor, the optimizer's too, loads without map_location anywhere
    saved = torch.load(copy / "checkpoint.pt", weights_only=True)
    assert "device" not in saved["config"] and saved["history"]["epoch"] == [1, 2, 3, 4]
    state = [v for s in saved["optimizer"]["state"].values() for v in s.values() if isinstance(v, torch.Tensor)]
    assert state and all(v.device.type == "cpu" for v in state + list(saved["state_dict"].values()))


def test_cli_resume_takes_device_and_refuses_the_model_settings(cuda_model, tmp_path, capsys):
    out, _ = cuda_model
    copy = copied(out, tmp_path / "sin")
    assert cli.main(["train", "--resume", str(copy), "--device", "cpu", "--epochs", "1", "--quiet", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["epochs_run"] == 3 and metrics["timings"]["device"] == "cpu"

    kept = (copy / "checkpoint.pt").read_bytes()
    for args, says in ((["--batch", "8"], "--resume keeps the model's settings: drop --batch (only --epochs, --device"),
                       (["--seed", "1", "--qat"], "drop --seed, --qat"),
                       (["--out", str(tmp_path / "other")], f"--resume writes the model back into {copy}: drop --out")):
        assert cli.main(["train", "--resume", str(copy), "--quiet", *args]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
    if not torch.cuda.is_available():
        assert cli.main(["train", "--resume", str(copy), "--device", "cuda", "--quiet"]) == 1
        assert "no CUDA GPU" in capsys.readouterr().err
    assert (copy / "checkpoint.pt").read_bytes() == kept and not (tmp_path / "other").exists()
