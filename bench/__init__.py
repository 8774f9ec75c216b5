"""Experiments: benchmarks, results tables, comparisons and pipelines (`vla.bench`).

This layer may import every other one (`vla`, `vla.kernels`, `vla.policies`, `vla.envs`);
nothing but `scripts/` and tests imports it (tests/test_import_rules.py keeps that rule).
"""
