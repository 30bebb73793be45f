"""Polyniod host tools: talk to Gen0, collect, train, deploy, simulate."""

__version__ = "0.1.0"
