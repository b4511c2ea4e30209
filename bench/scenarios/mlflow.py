"""Side by side with MLflow: the latency scenario against our stack, then the same against an MLflow tracking server
with its model-registry webhooks, in the same run, and our/MLflow ratios (below 1: we are faster).

The MLflow side is ``bench/mlflow_side.py`` (its own virtualenv, SQLite backend, its own loopback receiver):
``measure(count, work_dir) -> {"version", "api_ms", "delivery_ms", "cpu_s", "peak_rss_mb"}``. Our stack is stopped
before MLflow runs, so the two never compete for the machine's two cores.
"""

from __future__ import annotations

import importlib

from ..report import RESULTS, Context, Target, summary, table
from . import latency

NAME = "mlflow"


def _mlflow_side():
    try:
        return importlib.import_module("bench.mlflow_side")
    except ModuleNotFoundError as exc:
        if exc.name != "bench.mlflow_side":
            raise
        return None


def run(context: Context) -> dict:
    count = 100 if context.quick else 1000
    ours = latency.measure(context, count=count, label="mlflow-ours")
    ours_api, ours_delivery = summary(ours["api_ms"]), summary(ours["delivery_ms"])
    side = _mlflow_side()
    if side is None:
        print("\nbench/mlflow_side.py is not there yet: only our side was measured.")
        print(latency.latency_table(ours))
        return {"ours": {**ours, "summary": {"api_ms": ours_api, "delivery_ms": ours_delivery}}, "mlflow": None}
    theirs = side.measure(count, RESULTS / "mlflow-work")
    their_api, their_delivery = summary(theirs["api_ms"]), summary(theirs["delivery_ms"])

    def ratio(a: dict, b: dict, key: str) -> float:
        return round(a[key] / b[key], 3) if b.get(key) else float("nan")

    ratios = {
        f"{what}_{q}": ratio(a, b, q)
        for what, a, b in (("delivery", ours_delivery, their_delivery), ("api", ours_api, their_api))
        for q in ("p50", "p95", "p99")
    }
    rows = []
    for label, a, b in (("event → delivery", ours_delivery, their_delivery), ("API call", ours_api, their_api)):
        for q in ("p50", "p95", "p99"):
            rows.append((f"{label} {q}", a.get(q, float("nan")), b.get(q, float("nan")), ratio(a, b, q)))
    rows.append(("CPU s (measured loop)", ours["cpu_s_ours"], theirs.get("cpu_s", float("nan")), float("nan")))
    rows.append(
        (
            "peak RSS MB (all processes)",
            ours["peak_rss_mb_total"],
            theirs.get("peak_rss_mb", float("nan")),
            float("nan"),
        )
    )
    print(f"\n## mlflow: {count} alias changes each, ours vs MLflow {theirs.get('version', '?')}\n")
    print(table(["ms", "ours", "MLflow", "ours/MLflow"], rows))
    if theirs.get("notes"):
        print(f"\nMLflow side: {theirs['notes']}")
    return {
        "count": count,
        "mlflow_version": theirs.get("version"),
        "ours": {**ours, "summary": {"api_ms": ours_api, "delivery_ms": ours_delivery}},
        "mlflow": {**theirs, "summary": {"api_ms": their_api, "delivery_ms": their_delivery}},
        "ratios": ratios,
        # Faster than MLflow with a margin: at most 0.8 of its time at the median and the tail, in the same run.
        "targets": [
            Target(f"delivery {q} ours/MLflow", "≤ 0.8", ratios[f"delivery_{q}"], ratios[f"delivery_{q}"] <= 0.8)
            for q in ("p50", "p99")
        ],
    }
