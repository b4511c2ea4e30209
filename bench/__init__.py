"""Benchmarks of the production stack: see bench/README.md. Entry point: ``bench/run``."""
