"""Makes tests/ a package so helpers import as `from tests.mpvm import run_micropython`."""
