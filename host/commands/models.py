"""`host models`: the trained models, one line each (task, shape, validation error per joint float, int8 and the
linear fit's, blob size)."""

from host.models import list_models
from host.table import print_listing


def add_parser(sub):
    p = sub.add_parser("models", help="list trained models and their metrics",
                       description="List the trained models in a directory: task, network shape, the held-out "
                                   "(validation) RMSE per joint of the float network, of the int8 blob the board runs "
                                   "and of a least-squares linear fit, in each output's unit, blob size and date.")
    p.add_argument("--dir", default="models", help="models directory")
    p.add_argument("--json", action="store_true", help="print every model's metrics as JSON")
    p.set_defaults(run=run)


def run(args):
    rows = list_models(args.dir)
    print_listing(rows, args.json, f"no models in {args.dir} (train one with `host train`)",
                  ("name", "task", "shape", "val RMSE (float)", "int8 RMSE", "linear fit RMSE", "blob", "created"), _row)
    if not args.json:
        for m in rows:
            for warning in m.get("warnings", []):
                print(f"warning: {m['name']}: {warning}")
    return 0


def _row(m):
    shape = "-".join(str(n) for n in [len(m["inputs"]), *m["config"]["hidden"], len(m["outputs"])])
    linear = (m.get("baseline_rmse") or {}).get("linear")
    return (m["name"], m["task"], shape, _errors(m["val_rmse"]), _errors(m["int8"]["val_rmse"]),
            _errors(linear) if linear else "-", f"{m['sizes']['blob_bytes']} B",
            (m.get("created") or "-")[:19].replace("T", " "))


def _errors(per_output):
    """`shoulder 105 µs, elbow 90.8 µs`: each output by its joint, with its unit."""
    from host.train.dataset import output_label

    return ", ".join(" ".join(filter(None, (output_label(o)[0], f"{v:.3g}", output_label(o)[2])))
                     for o, v in per_output.items())
