"""`host models`: the trained models, one line each (task, shape, validation error float and int8, blob size)."""

import json
from pathlib import Path
from host.table import print_table


def add_parser(sub):
    p = sub.add_parser("models", help="list trained models and their metrics")
    p.add_argument("--dir", default="models", help="models directory (default ./models)")
    p.add_argument("--json", action="store_true", help="print every model's metrics as JSON")
    p.set_defaults(run=run)


def list_models(directory):
    """[metrics dict + "path"] of each model directory under `directory`; {"name", "path", "error"} if unreadable."""
    rows = []
    root = Path(directory)
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []:
        try:
            metrics = json.loads((d / "metrics.json").read_text())
            if not isinstance(metrics, dict):
                raise ValueError("not a JSON object")
            rows.append({**metrics, "name": d.name, "path": str(d)})
        except FileNotFoundError:
            if (d / "model.bin").exists() or (d / "checkpoint.pt").exists():
                rows.append({"name": d.name, "path": str(d), "error": "no metrics.json"})
        except (OSError, ValueError) as e:
            rows.append({"name": d.name, "path": str(d), "error": f"metrics.json unreadable: {e}"})
    return rows


def run(args):
    rows = list_models(args.dir)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no models in {args.dir} (train one with `host train`)")
        return 0
    table = [("name", "task", "shape", "val RMSE", "int8 RMSE", "blob", "created")]
    for m in rows:
        if "error" in m:
            table.append((m["name"], "-", "-", "-", "-", "-", m["error"]))
            continue
        shape = "-".join(str(n) for n in [len(m["inputs"]), *m["config"]["hidden"], len(m["outputs"])])
        table.append((m["name"], m["task"], shape, _errors(m["val_rmse"]), _errors(m["int8"]["val_rmse"]),
                      f"{m['sizes']['blob_bytes']} B", (m.get("created") or "-")[:19].replace("T", " ")))
    print_table(table)
    return 0


def _errors(per_output):
    return " ".join(f"{v:.3g}" for v in per_output.values())
