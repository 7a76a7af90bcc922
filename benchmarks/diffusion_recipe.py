"""A diffusion recipe by measurement: train the MNIST denoiser (padded to 32 px) for a budget of CPU-minutes and
look at 20-step DPM-Solver++ grids of its EMA weights on the way.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diffusion_recipe.py --out runs/recipe/flow-small \\
        --prediction flow --widths 16,32,64 --lr 1e-3 --minutes 5,10,15,20

A plain loop around atelier.diffusion (what the training task will do, minus its run folder): seeded
batches of MNIST, 2 px of background padding on each side (28 -> 32, the issue's "padded to 32"),
:func:`atelier.diffusion.training_loss` with its own CPU generator, Adam, gradient clipping at 1, bf16
autocast by default (atelier's default precision) and an EMA of the weights with a half-life counted in
images (atelier.training.ema). The clock is the process's CPU time with one thread, so a busy shared
machine does not shorten the training a run gets; sampling and scoring are not counted.

At every ``--minutes`` mark it writes ``grid-XXmin.png`` (64 EMA samples, DPM-Solver++ 20 steps, fixed seed)
and one JSON line in ``log.jsonl``: images seen, CPU images/s, the mean loss since the last mark, and the
domain scores of ``--n`` EMA samples cropped back to 28 px: FID and KID with atelier's digits evaluator
against mnist:test (with few samples FID is biased upwards: compare runs at the same ``--n`` only), the
share of samples the digits classifier reads with confidence > 0.9 and the entropy of its predicted classes
over log 10 (1: all digits equally often). At the last mark the raw weights are scored too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from atelier.data import BatchLoader, open_source
from atelier.diffusion import sample, training_loss
from atelier.imageio import save_image
from atelier.images import make_grid
from atelier.models import build
from atelier.models.diffusion import DiffusionConfig
from atelier.training.ema import EMA

PAD = 2   # 28 -> 32: the U-Net halves the image twice


def score(unet: torch.nn.Module | None, cfg: DiffusionConfig, n: int, seed: int, ev, sampler: str = "dpm++",
          steps: int = 20) -> tuple[torch.Tensor, dict]:
    """Scores of n EMA samples, or of n real training digits when ``unet`` is None (the floor of these numbers)."""
    from atelier.metrics import evaluate_images

    if unet is None:
        real = open_source("mnist", channels=1, resolution=28, limit=n).images.float() / 127.5 - 1
        images = F.pad(real, (PAD, PAD, PAD, PAD), value=-1.0)
    else:
        images = torch.cat([sample(unet, cfg, min(250, n - i), sampler=sampler, steps=steps, seed=seed + i)
                            for i in range(0, n, 250)])                   # (n, 1, 32, 32)
    digits = ((images[:, :, PAD:-PAD, PAD:-PAD] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    recs = evaluate_images(digits, ref="mnist:test", evaluator=ev, metrics=("fid", "kid"), seed=seed)
    out = {r["metric"]: round(r["value"], 4) for r in recs}
    probs = ev(digits).logits.softmax(1)
    out["confident"] = round(float((probs.max(1).values > 0.9).float().mean()), 3)
    # Entropy of the predicted classes' histogram over log(10): 1 when all ten digits are drawn equally often.
    freq = torch.bincount(probs.argmax(1), minlength=10).float() / len(probs)
    out["class_entropy"] = round(float(-(freq * freq.clamp_min(1e-12).log()).sum() / torch.log(torch.tensor(10.0))), 3)
    return images, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--prediction", default="epsilon", choices=["epsilon", "v_prediction", "flow"])
    ap.add_argument("--schedule", default="cosine", choices=["linear", "cosine"])
    ap.add_argument("--flow-timesteps", default="uniform", choices=["uniform", "logit_normal"])
    ap.add_argument("--widths", default="32,64,64", help="block_out_channels")
    ap.add_argument("--layers", type=int, default=1, help="layers_per_block")
    ap.add_argument("--attention", default="8", help="attention resolutions (px), comma-separated; '' for none")
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ema-kimg", type=float, default=5.0, help="EMA half-life in thousands of images")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--minutes", default="5,10,15,20", help="CPU-minute marks for grids and scores")
    ap.add_argument("--n", type=int, default=500, help="samples scored at each mark")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline", action="store_true", help="score --n real training digits instead, and exit")
    ap.add_argument("--rescore", type=Path, help="score these saved EMA weights (of the run in --out) and exit")
    ap.add_argument("--sampler", default="dpm++", help="with --rescore")
    ap.add_argument("--steps", type=int, default=20, help="with --rescore")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from atelier.metrics import load_evaluator

    ev = load_evaluator("digits")
    if args.baseline:
        print(json.dumps({"real_train_digits": args.n, **score(None, DiffusionConfig(), args.n, 0, ev)[1]}))
        return
    if args.rescore:
        from safetensors.torch import load_file

        cfg = DiffusionConfig.model_validate(json.loads((args.out / "config.json").read_text())["model"])
        unet = build({"name": "diffusion", **cfg.model_dump()}, resolution=32, channels=1)["unet"]
        unet.load_state_dict(load_file(str(args.rescore)))
        images, scores = score(unet, cfg, args.n, 1234, ev, args.sampler, args.steps)
        stem = f"{args.rescore.stem}-{args.sampler}-{args.steps}"
        save_image(make_grid(images[:64], nrow=8, scale=2), args.out / f"{stem}.png")
        print(json.dumps({"weights": str(args.rescore), "sampler": args.sampler, "steps": args.steps, **scores}))
        return
    widths = tuple(int(w) for w in args.widths.split(","))
    attn = tuple(int(a) for a in args.attention.split(",") if a)
    cfg = DiffusionConfig(block_out_channels=widths, layers_per_block=args.layers, attention_resolutions=attn,
                          attention_head_dim=args.head_dim, norm_num_groups=args.groups, prediction=args.prediction,
                          schedule=args.schedule, flow_timesteps=args.flow_timesteps)
    unet = build({"name": "diffusion", **cfg.model_dump()}, resolution=32, channels=1)["unet"]
    params = sum(p.numel() for p in unet.parameters())
    opt = torch.optim.Adam(unet.parameters(), lr=args.lr)
    ema = EMA(unet, args.ema_kimg, rampup=0.05)
    loader = BatchLoader(open_source("mnist", channels=1, resolution=28), args.batch, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    marks = [float(m) for m in args.minutes.split(",")]
    print(f"{args.out.name}: {params / 1e6:.2f} M params, {vars(args)}", flush=True)
    (args.out / "config.json").write_text(json.dumps({"model": cfg.model_dump(), "args": vars(args)}, default=str,
                                                     indent=2))

    seen, cpu, losses = 0, 0.0, []
    for i, mark in enumerate(marks):
        while cpu < mark * 60:
            t0 = time.process_time()
            x, _ = loader.next()
            x = F.pad(x, (PAD, PAD, PAD, PAD), value=-1.0)               # background is -1 in [-1, 1]
            amp = torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext()
            with amp:
                loss = training_loss(unet, x, None, cfg, generator=gen)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            seen += x.shape[0]
            ema.update(unet, x.shape[0], seen)
            losses.append(float(loss.detach()))
            cpu += time.process_time() - t0
        t_eval = time.perf_counter()
        save_file({k: v.contiguous() for k, v in ema.model.state_dict().items()},
                  str(args.out / f"ema-{mark:04.1f}min.safetensors"))
        images, scores = score(ema.model, cfg, args.n, 1234, ev)
        save_image(make_grid(images[:64], nrow=8, scale=2), args.out / f"grid-{mark:04.1f}min.png")
        rec = {"minutes": mark, "kimg": round(seen / 1000, 1), "img_per_cpu_s": round(seen / cpu, 1),
               "loss": round(sum(losses) / len(losses), 4), "ema": scores, "threads": args.threads}
        if i == len(marks) - 1:
            raw_images, rec["raw"] = score(unet, cfg, args.n, 1234, ev)
            save_image(make_grid(raw_images[:64], nrow=8, scale=2), args.out / f"grid-{mark:04.1f}min-raw.png")
        rec["eval_seconds"] = round(time.perf_counter() - t_eval, 1)
        losses = []
        print(json.dumps(rec), flush=True)
        with open(args.out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
