"""Samplers and step counts of a trained MNIST diffusion run, by measurement: FID / KID against mnist:test with the
digits evaluator, the share of samples the digits classifier reads as the class asked for (class-conditional
runs: classes cycled 0-9), and the CPU time per image, for each sampler at each number of steps; EMA against raw
weights at the run's default sampler.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diffusion_samplers.py runs/mnist-diffusion --n 500 \\
        --steps 10,20,50 --samplers dpm++,euler

``--guidance`` lists guidance scales to compare at the run's default sampler and steps. With few samples FID is
biased upwards: compare rows of one table only. One thread, process CPU time (the machine was shared).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import atelier
from atelier.metrics import evaluate_images, load_evaluator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--steps", default="10,20,50")
    ap.add_argument("--samplers", default="dpm++,euler", help="comma-separated; '' for none")
    ap.add_argument("--guidance", default="", help="guidance scales to compare, e.g. 1,2,3")
    ap.add_argument("--raw", action="store_true", help="also score the raw weights at the run's defaults")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ev = load_evaluator("digits")
    ema = atelier.load(args.run)
    labels = torch.arange(args.n) % ema.num_classes if ema.num_classes else None

    def row(m, what: str) -> None:
        started = time.process_time()
        images = m.sample(args.n, seed=args.seed, labels=labels)
        seconds = time.process_time() - started
        recs = evaluate_images(images, ref="mnist:test", evaluator=ev, metrics=("fid", "kid"), seed=0)
        s = {r["metric"]: r["value"] for r in recs}
        agree = float((ev(images).logits.argmax(1) == labels).float().mean()) if labels is not None else None
        agree_text = f"{agree:.3f}" if agree is not None else "-"
        print(f"| {what} | {m.sampler_name} | {m.steps} | {m.guidance if m.num_classes else '-'} | {s['fid']:.2f} | "
              f"{s['kid']:.4f} | {agree_text} | {seconds / args.n * 1000:.0f} |", flush=True)

    print(f"{args.run.name} step {ema.step}: {args.n} samples, seed {args.seed}, digits evaluator vs mnist:test, "
          f"{args.threads} thread(s), process CPU time")
    print("| weights | sampler | steps | guidance | FID | KID | read as the class asked | ms/image |")
    print("|---|---|---|---|---|---|---|---|")
    for sampler in filter(None, args.samplers.split(",")):
        for steps in (int(s) for s in args.steps.split(",")):
            row(ema.with_sampling(steps=steps, sampler=sampler), "EMA")
    for w in (float(g) for g in args.guidance.split(",") if g):
        row(ema.with_sampling(guidance=w), "EMA")
    if args.raw:
        row(atelier.load(args.run, which="raw"), "raw")
    print(json.dumps({"n": args.n, "seed": args.seed, "threads": args.threads}))


if __name__ == "__main__":
    main()
