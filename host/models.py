"""The models directory: one folder per `host train` run (host/train/checkpoint.py writes it), read
without PyTorch so listing and looking models up stays instant."""

import json
from pathlib import Path


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


def find_model(directory, model_id):
    """The list_models row of the model whose blob id (8 hex digits) is model_id, or None."""
    return next((m for m in list_models(directory) if model_id and m.get("model_id") == model_id), None)
