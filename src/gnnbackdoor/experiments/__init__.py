"""Experiments: run specs, the runner, records, sweeps and reports."""
