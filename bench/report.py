"""Percentiles, tables and result files shared by the scenarios."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.stack import Stack

from .stack import InfraProcesses, ResourceMonitor

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict:
    """n, mean, p50, p95, p99 and max, in the values' unit, rounded to 0.01."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": round(sum(values) / len(values), 2),
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2),
    }


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (readable as plain text too)."""
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def process_table(processes: list[dict]) -> str:
    return table(
        ["process", "pid", "CPU s", "peak RSS MB"],
        [(p["kind"], p["pid"], p["cpu_s"], p["peak_rss_mb"]) for p in processes],
    )


@dataclass
class Target:
    name: str
    limit: str
    value: float
    met: bool

    def row(self) -> tuple:
        return (self.name, self.limit, self.value, "met" if self.met else "MISSED")


def targets_table(targets: list[Target]) -> str:
    return table(["target", "limit", "measured", ""], [t.row() for t in targets])


def machine() -> dict:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


@dataclass
class Context:
    """What a scenario gets from the runner."""

    env: dict[str, str]
    work_dir: Path
    quick: bool
    command: str
    notes: list[str] = field(default_factory=list)
    profile: str | None = None  # a stack role to record with py-spy during each measurement
    profile_gil: bool = False

    def monitor(self, stack: Stack, label: str) -> ResourceMonitor:
        """The resource monitor of one measurement window (with py-spy on ``profile``'s role when asked)."""
        profile = None
        if self.profile:
            profile = (self.profile, self.work_dir / f"profile-{label}-{self.profile}.speedscope.json")
        return ResourceMonitor(stack.roots(), infra=InfraProcesses(), profile=profile, profile_gil=self.profile_gil)

    def scenario_dir(self, name: str) -> Path:
        path = self.work_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def write_result(name: str, context: Context, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        "scenario": name,
        "command": context.command,
        "quick": context.quick,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        **result,
    }
    for key in ("targets",):
        if key in document:
            document[key] = [t.__dict__ if isinstance(t, Target) else t for t in document[key]]
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
