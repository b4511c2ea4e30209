"""``python -m bench.summary``: the headline figures of the latest results (bench/results/*.json) as one markdown
table, for bench/README.md."""

from __future__ import annotations

import json

from .report import RESULTS, table


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def rows() -> list[tuple]:
    found: list[tuple] = []
    if latency := _load("latency"):
        s = latency["summary"]
        found.append(("latency", "event → delivery p50 / p95 / p99 ms", _triple(s["delivery_ms"]), "≤ 15 / - / ≤ 60"))
        found.append(("latency", "API call p50 / p95 / p99 ms", _triple(s["api_ms"]), ""))
        rss = f"{latency['peak_rss_mb_celery']} / {latency.get('peak_rss_mb_web', '-')}"
        found.append(("latency", "worker / web peak RSS MB", rss, "< 150 each"))
    if reads := _load("reads"):
        for label, s in reads["summary"].items():
            found.append(("reads", f"{label} p50 / p95 / p99 ms", _triple(s), "p50 < 5"))
        found.append(("reads", "web CPU ms per read", reads["web_cpu_ms_per_call"], ""))
    if (mlflow := _load("mlflow")) and mlflow.get("mlflow"):
        r = mlflow["ratios"]
        theirs = _triple(mlflow["mlflow"]["summary"]["delivery_ms"])
        found.append(("mlflow", f"MLflow {mlflow['mlflow_version']} delivery p50 / p95 / p99 ms", theirs, ""))
        ratios = f"{r['delivery_p50']} / {r['delivery_p95']} / {r['delivery_p99']}"
        found.append(("mlflow", "ours/MLflow delivery p50 / p95 / p99", ratios, "≤ 0.8"))
        found.append(
            ("mlflow", "ours/MLflow API p50 / p95 / p99", f"{r['api_p50']} / {r['api_p95']} / {r['api_p99']}", "")
        )
    if throughput := _load("throughput"):
        found.append(("throughput", f"deliveries/s ({throughput['unique']}/{throughput['expected']} delivered)",
                      throughput["deliveries_per_s"], "≥ 1000"))  # fmt: skip
        found.append(("throughput", "CPU ms per delivery, ours + PostgreSQL + Redis (ours alone)",
                      f"{throughput['cpu_ms_per_delivery']} ({throughput.get('cpu_ms_per_delivery_ours', '-')})",
                      "≤ 1"))  # fmt: skip
        found.append(("throughput", "worker peak RSS MB", throughput["peak_rss_mb_celery"], "< 150"))
    if slow := _load("slow"):
        p99 = f"{slow['without_slow']['summary']['p99']} / {slow['with_slow']['summary']['p99']}"
        found.append(("slow", "fast endpoints' p99 ms without / with the slow one", p99, ""))
        found.append(("slow", "p99 increase ms", slow["p99_increase_ms"], "< 20"))
    if claims := _load("claims"):
        levels = claims["levels"]
        found.append(("claims", "claims/s with " + " / ".join(str(lv["agents"]) for lv in levels) + " agents",
                      " / ".join(str(lv["claims_per_s"]) for lv in levels), "≥ 500"))  # fmt: skip
        found.append(("claims", "duplicates", sum(lv["duplicates"] for lv in levels), "0"))
    return found


def _triple(s: dict) -> str:
    return f"{s.get('p50')} / {s.get('p95')} / {s.get('p99')}"


def main() -> None:
    print(table(["scenario", "figure", "measured", "target"], rows()))


if __name__ == "__main__":
    main()
