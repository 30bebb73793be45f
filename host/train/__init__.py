"""Training: tasks (tasks.py) turn sessions into rows (dataset.py); an MLP (model.py) is fitted (fit.py)
and saved with its device blob (checkpoint.py); pipeline.py ties them: `train()`, `resume()`.

Importing the package is cheap (no PyTorch): the CLI lists the tasks without loading torch. TRAIN.md
tells the whole story.
"""
