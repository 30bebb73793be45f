"""A trained model run over a recorded session: the int8 blob through the host reference executor (what
the device computes, bit for bit) and, when the model directory has its checkpoint, the float network.

ModelRun builds the model's rows with training's own feature code (dataset.session_rows); output
`<field>@+k` of the row anchored at tick i lands in column `<field>` at tick i + k. Its predict()
plugs into replay()'s `predict` and its predicted() into the session plot.
"""

from pathlib import Path

import numpy as np

from host.deploy import read_blob
from host.errors import UserError
from host.sessions.stats import error, robot_of, when
from host.train.dataset import dropped_text, feature_column, session_rows


JOINT_FIELDS = ("_cmd_us", "_raw", "_deg")  # what the telemetry logs of every joint (firmware TELEMETRY schema)


class ModelRun:
    """A model (models/NAME directory or .bin) run over the rows of one session, int8 and float.

    int8: the host reference executor, what the device computes. float: the PyTorch network of
    the directory's checkpoint.pt; a bare .bin has none, and float is then None with the reason
    in `float_unavailable` -- never stood in for by the int8 figures.
    """

    def __init__(self, model, session):
        _, self.reference = read_blob(model)
        ref = self.reference
        self.path, self.session = Path(model), session
        _check_fits(ref, session, model)
        try:
            rows = session_rows(session, ref.inputs, ref.outputs)
        except UserError as e:
            raise UserError(f"model {model}: {e}") from None
        self.x, self.y, self.anchors = rows["all"]
        self.dropped = rows["dropped"]
        if not len(self.x):
            raise UserError(f"session {session.name} gives model {model} no rows (left out: "
                            f"{dropped_text(self.dropped)}): record a longer session with the servos driven")
        self.targets = [feature_column(o, output=True) for o in ref.outputs]  # (column, ticks ahead)
        self.int8 = ref.infer(self.x)
        network, self.float_unavailable = float_network(self.path, ref)
        self.float = network(self.x) if network else None

    def columns(self, rows):
        """Per-row outputs [rows, n_out] -> session-length columns, each output at its anchor + k, NaN elsewhere."""
        out = {}
        for i, (column, k) in enumerate(self.targets):
            out[column] = np.full(len(self.session), np.nan)
            out[column][self.anchors + k] = rows[:, i]
        return out

    def predict(self, columns):
        """The `predict` of replay(): what the device would have computed (int8; the rows are this session's)."""
        return self.columns(self.int8)

    def predicted(self):
        """plot()'s overlays: int8, and float when the checkpoint is there."""
        overlays = {"model int8": self.columns(self.int8)}
        if self.float is not None:
            overlays["model float"] = self.columns(self.float)
        return overlays

    def title(self):
        """`model b31118e5 (inverse, models/mine)`: which model a plot shows."""
        return f"model {self.reference.model_id:08x} ({self.reference.task}, {self.path})"

    def report(self):
        """Model id and task, rows used and dropped, and per output the error of int8 and float vs the logged values."""
        ref, units = self.reference, self.session.units
        outputs = {}
        for i, (name, (column, k)) in enumerate(zip(ref.outputs, self.targets)):
            y, q, f = self.y[:, i], self.int8[:, i], None if self.float is None else self.float[:, i]
            worst = int(np.nanargmax(np.abs(q - y))) if np.isfinite(q - y).any() else None
            at = None if worst is None else when(self.session, self.anchors[worst] + k)
            if at and at["row"] > 0:  # a step in the logged value there: the error of a jump, not of a drift
                logged = self.session.columns[column]
                at["logged_step"] = round(float(logged[at["row"]] - logged[at["row"] - 1]), 3)
            outputs[name] = {"column": column, "ahead": k, "unit": units.get(column, ""), "int8": error(y, q),
                             "int8_max_at": at,
                             "float": None if f is None else error(y, f),
                             "int8_vs_float": None if f is None else error(f, q)}
        return {"path": str(self.path), "name": ref.spec.meta.get("name"), "model_id": f"{ref.model_id:08x}",
                "task": ref.task, "inputs": ref.inputs, "outputs": outputs,
                "rows": {"used": len(self.x), "dropped": self.dropped},
                "float": self.float is not None, "float_unavailable": self.float_unavailable}


def _check_fits(ref, session, model):
    """UserError unless the session's robot has the model's joints and runs at the model's rate."""
    if not any(seg["hello"] for seg in session.segments):
        raise UserError(f"session {session.name} holds no telemetry the board described (no hello): "
                        f"nothing to run model {model} over; record one with `host collect`")
    joints, rate = robot_of([session])
    wanted = [feature_column(n, output=False)[0] for n in ref.inputs] + \
             [feature_column(n, output=True)[0] for n in ref.outputs]
    foreign = sorted({c[:-len(f)] for c in wanted for f in JOINT_FIELDS if c.endswith(f) and c[:-len(f)] not in joints})
    if foreign:
        raise UserError(f"model {model} drives joints {', '.join(foreign)}; session {session.name}'s robot has "
                        f"{', '.join(joints)}: replay a session of the robot the model was trained for")
    missing = sorted(set(wanted) - set(session.columns))
    if missing:
        raise UserError(f"model {model} ({ref.task}) needs {', '.join(missing)}, which session {session.name} "
                        "does not log: give a model trained on sessions of this robot")
    trained = ref.spec.meta.get("rate_hz")
    if trained and rate and trained != rate:
        raise UserError(f"model {model} counts ticks at {trained} Hz, session {session.name} ran at {rate} Hz: "
                        "replay a session recorded at the model's rate")


def float_network(model, reference):
    """(inputs -> outputs in their units, None) from the checkpoint of a model directory, or (None, why not)."""
    if not model.is_dir():
        return None, f"{model} is a bare blob: the float network lives in its models/NAME directory's checkpoint.pt"
    if not (model / "checkpoint.pt").is_file():
        return None, f"{model} has no checkpoint.pt"
    from host.train import checkpoint as ckpt  # torch: only when a float network is there to run
    from host.train.fit import predict

    checkpoint = ckpt.load(model)
    if (checkpoint["inputs"], checkpoint["outputs"]) != (reference.inputs, reference.outputs):
        raise UserError(f"{model}: checkpoint.pt and model.bin map different inputs or outputs: train it again")
    n = {k: np.asarray(v, dtype=np.float64) for k, v in checkpoint["norm"].items()}
    network = ckpt.build(checkpoint)
    return (lambda x: predict(network, (x - n["in_mean"]) / n["in_std"]) * n["out_std"] + n["out_mean"]), None
