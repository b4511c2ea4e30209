"""``bench/run [scenario ...] [--quick]``: recreate the benchmark database, then run each scenario against a fresh
production stack, print its tables and write ``bench/results/<scenario>.json``."""

from __future__ import annotations

import argparse
import importlib
import shlex
import shutil
import signal
import sys
import time
import traceback

from cryptography.fernet import Fernet

from .report import RESULTS, Context, targets_table, write_result
from .stack import BROKER_URL, DB_NAME, base_env, broker_reset, database_reset

SCENARIOS = {
    "latency": "bench.scenarios.latency",
    "mlflow": "bench.scenarios.mlflow",
    "reads": "bench.scenarios.reads",
    "throughput": "bench.scenarios.throughput",
    "slow": "bench.scenarios.slow",
    "claims": "bench.scenarios.claims",
    "embedded": "bench.scenarios.embedded",
    "files": "bench.scenarios.files",
    "client": "bench.scenarios.client",
    "trickle": "bench.scenarios.trickle",
    "hop": "bench.scenarios.hop",
    "outage": "bench.scenarios.outage",
}
TIME_LIMIT = 90 * 60  # the whole run stops by itself after this many seconds


def _alarm(signum: int, frame: object) -> None:
    raise TimeoutError(f"the benchmark run exceeded {TIME_LIMIT} s")


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # unwinds through every stack's and receiver's cleanup


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="scenario", help=f"{', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sample counts: a smoke check, not a result")
    parser.add_argument(
        "--profile",
        choices=["web", "worker", "deliveries"],
        help="record this process (and its children) with py-spy during each measurement, into bench/results/work",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every stack process, e.g. DELIVERY_CONCURRENCY=32 (repeatable)",
    )
    parser.add_argument("--gil", action="store_true", help="with --profile: sample only threads holding the GIL (CPU)")
    args = parser.parse_args(argv)
    names = args.scenarios or list(SCENARIOS)
    if unknown := [n for n in names if n not in SCENARIOS]:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT)
    signal.signal(signal.SIGTERM, _terminate)

    work = RESULTS / "work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "var").mkdir(parents=True)
    env = base_env(secrets_key=Fernet.generate_key().decode(), var_dir=work / "var")
    for pair in args.env:
        name, sep, value = pair.partition("=")
        if not sep:
            parser.error(f"--env takes NAME=VALUE, not {pair!r}")
        env[name] = value
    context = Context(
        env=env,
        work_dir=work,
        quick=args.quick,
        command=shlex.join(["bench/run", *argv]),
        profile=args.profile,
        profile_gil=args.gil,
    )
    print(f"==> recreating database {DB_NAME} and Redis {BROKER_URL} (logs in {work})", flush=True)
    database_reset(env, log=work / "migrate.log")

    failed = []
    all_targets = []
    for name in names:
        started = time.monotonic()
        print(f"\n==> {name}", flush=True)
        broker_reset()
        try:
            result = importlib.import_module(SCENARIOS[name]).run(context)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        path = write_result(name, context, result)
        all_targets += [(name, t) for t in result.get("targets", [])]
        print(f"\n({name}: {time.monotonic() - started:.0f} s; wrote {path.relative_to(RESULTS.parent.parent)})")
    if all_targets:
        print("\n## targets\n")
        print(targets_table([t for _, t in all_targets]))
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
