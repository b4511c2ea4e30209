"""One module per scenario; each has ``run(context) -> dict`` that prints its tables and returns what is written to
``bench/results/<scenario>.json``."""
