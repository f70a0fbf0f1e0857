"""Run every benchmark and collect the results in one JSON file.

Each benchmark runs in its own process (so one's compilation caches and
threads do not affect the next) with ``--json`` pointing at a temporary file;
the collected file maps each benchmark's name to what it wrote, plus the
exit status and the wall time of the run.

    python benchmarks/run_all.py [--quick] [--json out/benchmarks.json] [--only vae_step air_epoch]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = [
    "adev_overhead",
    "estimator_variance",
    "mcmc_numpyro",
    "vi_numpyro",
    "vae_step",
    "air_epoch",
    "scaling",
]


def run(name: str, quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, f"{name}.json")
        cmd = [sys.executable, os.path.join(HERE, f"{name}.py"), "--json", out] + (
            ["--quick"] if quick else []
        )
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        status = subprocess.run(cmd).returncode
        record = {"status": status, "wall_s": time.perf_counter() - start}
        if os.path.exists(out):
            with open(out) as f:
                record["results"] = json.load(f)
    if status != 0:
        print(f"!! {name} exited with status {status}", flush=True)
    return record


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    ap.add_argument(
        "--json", default=os.path.join(HERE, "..", "out", "benchmarks.json"), metavar="PATH"
    )
    ap.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    args = ap.parse_args(argv)
    results = {
        "quick": args.quick,
        "benchmarks": {name: run(name, args.quick) for name in args.only or BENCHMARKS},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
    failed = [n for n, r in results["benchmarks"].items() if r["status"] != 0]
    print(f"wrote {args.json}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
