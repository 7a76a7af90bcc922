"""Training speed on a quiet and on a busy CPU: today's thread defaults ("before") vs atelier's ("after").

    python benchmarks/busy_cpu.py                               # 3 rounds x 3 cases x before/after, ~8 min
    python benchmarks/busy_cpu.py --rounds 5 --seconds 15 --competitors 2
    python benchmarks/busy_cpu.py --variants before,after,one,passive2,spin2

Every measurement is a fresh process (OpenMP's wait policy is read once, when torch loads) that trains the
default MNIST DCGAN (``atelier.api.train``: the real loop, with its thread choice and A/B tuner) for
``--seconds`` after a 3-step warm-up, and reports images/s of the training steps. Cases:

* ``quiet``: nothing started by the benchmark;
* ``busy``:  ``--competitors`` processes, each spinning single-threaded fp32 matmuls, run throughout;
* ``late``:  the same competitors start after the run's warm-up (other jobs starting mid-run: the
  start-up choice saw a quiet machine, and only the tuner can react).

Variants (``--variants``): ``before`` = ``ATELIER_THREADS=off`` (torch's default: one thread per core,
libgomp's default spin-then-sleep wait policy; what atelier did before issue 16); ``after`` = atelier's
default; ``one`` = ``ATELIER_THREADS=1``; ``passive2`` = ``ATELIER_THREADS=2`` (passive wait policy,
no tuner); ``spin2`` = ``ATELIER_THREADS=2`` with ``GOMP_SPINCOUNT=10000``. Rounds are interleaved
(each round runs every case, variants in rotated order), so slow drifts in the machine's background
load hit every variant alike; the table gives medians, the spread (min-max) and the median of the
per-round after/before ratios. The "others" column is the CPU other processes used during the
measurement (competitors included), read from /proc/stat.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

VARIANTS = {
    "before": {"ATELIER_THREADS": "off"},
    "after": {},
    "one": {"ATELIER_THREADS": "1"},
    "passive2": {"ATELIER_THREADS": "2"},
    "spin2": {"ATELIER_THREADS": "2", "GOMP_SPINCOUNT": "10000"},
}
CASES = ("quiet", "busy", "late")
CLEAN = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME",
         "ATELIER_THREADS")

SPIN = """
import torch
torch.set_num_threads(1)
a = torch.randn(384, 384)
while True:
    a = torch.mm(a, a).clamp_(-1, 1)
"""


def child(seconds: float, batch: int, warmup: int = 3) -> None:
    """One measurement: train until ``seconds`` of steps after the warm-up; print one JSON line."""
    import atelier
    from atelier.threads import CpuSampler

    marks: dict[str, float] = {}
    sampler = CpuSampler()

    def callback(trainer) -> None:
        if trainer.step == warmup:
            marks.update(t=trainer.train_seconds, n=trainer.images_seen)
            sampler.read()
            print("warm", flush=True)  # the parent starts the "late" competitors now
        elif "t" in marks and trainer.train_seconds - marks["t"] >= seconds:
            marks.update(busy=sampler.read() or 0.0)
            trainer.request_stop()

    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"train.steps": 100_000, "train.batch_size": batch, "data.limit": 8192, "log.every": 1_000_000,
                     "log.sample_every": 1_000_000, "log.checkpoint_every": 1_000_000, "log.tensorboard": False}
        result = atelier.train(None, Path(tmp) / "run", overrides, progress=False, callback=callback)
    import torch

    rate = (result.images_seen - marks["n"]) / (result.seconds - marks["t"])
    print(json.dumps({"img_s": rate, "threads": torch.get_num_threads(), "others": marks.get("busy", 0.0),
                      "policy": os.environ.get("OMP_WAIT_POLICY", "") + os.environ.get("GOMP_SPINCOUNT", "")}),
          flush=True)


def _env(variant: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(VARIANTS[variant])
    return env


def start_competitors(n: int) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    return [subprocess.Popen([sys.executable, "-c", SPIN], env=env) for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def measure(variant: str, case: str, args: argparse.Namespace) -> dict:
    comp = start_competitors(args.competitors) if case == "busy" else []
    if comp:
        time.sleep(1.0)
    cmd = [sys.executable, __file__, "--child", "--seconds", str(args.seconds), "--batch", str(args.batch)]
    proc = subprocess.Popen(cmd, env=_env(variant), stdout=subprocess.PIPE, text=True, cwd=REPO)
    out = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "warm" and case == "late":
                comp = start_competitors(args.competitors)
            elif line.startswith("{"):
                out = json.loads(line)
        proc.wait()
    finally:
        stop(comp)
    if proc.returncode or not out:
        raise SystemExit(f"{variant}/{case}: the child failed (exit {proc.returncode})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=12.0, help="measured training seconds per process")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--competitors", type=int, default=2, help="busy processes the busy/late cases start")
    ap.add_argument("--variants", default="before,after")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.seconds, args.batch)
        return
    variants = [v for v in args.variants.split(",") if v]
    cases = [c for c in args.cases.split(",") if c]
    unknown = [v for v in variants if v not in VARIANTS] + [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown variant/case {unknown}; variants {list(VARIANTS)}, cases {list(CASES)}")
    results: dict[tuple[str, str], list[dict]] = {}
    print(f"DCGAN (default config) batch {args.batch}, {args.seconds:g} s per measurement, {args.rounds} rounds, "
          f"{args.competitors} competitor(s); cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f} at start",
          flush=True)
    for r in range(args.rounds):
        for case in cases:
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            for v in order:
                m = measure(v, case, args)
                results.setdefault((case, v), []).append(m)
                print(f"round {r + 1} {case:5} {v:8} {m['img_s']:7.0f} img/s  threads {m['threads']}  "
                      f"others {m['others']:.1f} cores", flush=True)
    print()
    print("| case | variant | img/s median | min-max | others' cores | final threads | vs before (per-round median) |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        for v in variants:
            ms = results[(case, v)]
            rates = [m["img_s"] for m in ms]
            ratio = ""
            if v != "before" and (case, "before") in results:
                per = [m["img_s"] / b["img_s"] for m, b in zip(ms, results[(case, "before")], strict=True)]
                ratio = f"{statistics.median(per):.2f}x ({min(per):.2f}-{max(per):.2f})"
            print(f"| {case} | {v} | {statistics.median(rates):.0f} | {min(rates):.0f}-{max(rates):.0f} | "
                  f"{statistics.median(m['others'] for m in ms):.1f} | "
                  f"{','.join(str(m['threads']) for m in ms)} | {ratio} |")
    print(f"\nload at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
