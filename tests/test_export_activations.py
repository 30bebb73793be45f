"""One list of activations (issue 12, item 4): the integer MLP's `mlp.ACTIVATIONS` (a layer's act code is
its index) is the list training (`host train --act`, the float model) and the exporter read; they add each
activation's function and nothing else, and an activation on one side only fails at import."""

import argparse
import re
from pathlib import Path

import numpy as np
import pytest

from polyniod_firmware import mlp

from host.commands import train as train_command
from host.export import quantize
from host.export.reference import Reference
from host.train import model as float_model

MLP_MD = Path(__file__).resolve().parent.parent / "firmware" / "MLP.md"


def test_training_export_and_the_cli_read_the_integer_mlps_list():
    assert tuple(quantize.ACTIVATIONS) == mlp.ACTIVATIONS == tuple(float_model.ACTIVATIONS)
    assert tuple(quantize.LUT_OUTPUT) == mlp.LUT_ACTIVATIONS == tuple(quantize.LUT_INPUT_LIMIT)
    parser = argparse.ArgumentParser()
    train_command.add_parser(parser.add_subparsers())
    assert [parser.parse_args(["train", "--act", a]).act for a in mlp.ACTIVATIONS] == list(mlp.ACTIVATIONS)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--act", "gelu"])


def test_an_activation_on_one_side_only_is_refused():
    with pytest.raises(ValueError, match="not the integer MLP's linear, relu, tanh, sigmoid"):
        quantize.per_activation(dict(quantize.ACTIVATIONS, gelu=np.tanh))
    with pytest.raises(ValueError, match="are not the integer MLP's"):
        quantize.per_activation({k: v for k, v in quantize.ACTIVATIONS.items() if k != "tanh"})


def test_the_spec_gives_the_codes_of_the_one_list():
    text = MLP_MD.read_text()
    row = re.search(r"^\| act \| u8 \| .*`mlp\.ACTIVATIONS`.*: (.*) \|$", text, flags=re.M)
    assert row, "MLP.md's act field names mlp.ACTIVATIONS"
    assert row.group(1).split(", ") == [f"{code} {name}" for code, name in enumerate(mlp.ACTIVATIONS)]
    assert re.search(rf"^\| 16 \| act <= {len(mlp.ACTIVATIONS) - 1} ", text, flags=re.M)


@pytest.mark.parametrize("act", mlp.ACTIVATIONS)
def test_every_activation_exports_with_its_code_and_runs_on_the_reference(act):
    rng = np.random.default_rng(mlp.ACTIVATIONS.index(act))
    layers = [{"w": rng.uniform(-1, 1, (4, 3)), "b": rng.uniform(-1, 1, 4), "act": act},
              {"w": rng.uniform(-1, 1, (1, 4)), "b": rng.uniform(-1, 1, 1), "act": "linear"}]
    x = rng.normal(size=(64, 3))
    blob = quantize.export(layers, x, np.zeros(3), np.ones(3), np.zeros(1), np.ones(1), ["a", "b", "c"], ["y"], "t")
    code = blob[mlp.HEADER_SIZE + 4]  # layer 0's act byte, after n_in and n_out
    assert mlp.ACTIVATIONS[code] == act and mlp.parse(blob).layers[0].act == act
    assert (mlp.parse(blob).layers[0].lut is not None) == (act in mlp.LUT_ACTIVATIONS)
    _, y = quantize.float_forward(layers, x)
    assert np.abs(Reference(blob).infer(x) - y).max() < 0.1


def test_train_refuses_an_activation_outside_the_list(tmp_path):
    from host.errors import UserError
    from host.train.pipeline import train

    with pytest.raises(UserError, match="--act gelu: give linear, relu, tanh or sigmoid"):
        train("xor", out=tmp_path / "x", act="gelu", progress=False)
    assert not (tmp_path / "x").exists()
