"""Training speed of candidate diffusion U-Nets (forward + backward + Adam step), images/s.

Each candidate is a ``model.*`` setting of atelier's ``diffusion`` model at 32 px, 1 channel (MNIST
padded to 32); the step is :func:`atelier.diffusion.training_loss` + backward + Adam. Rounds are
interleaved (every candidate once per round) and the median is reported, because the machine is shared.
The same table in bf16 autocast and channels_last shows what those levers give here. The ``reference``
mode is the plain loop of diffusers' unconditional training example without Accelerate (the same
``UNet2DModel``, ``DDPMScheduler.add_noise``, fp32 MSE on the noise, AdamW), the issue's yardstick.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diffusion_speed.py --threads 1 --batch 64

``--sampling`` times sampling instead: 20-step DPM-Solver++ chains of ``--batch`` images from one U-Net, by
:func:`atelier.diffusion.sample` (fp32, and under bf16 autocast) and by diffusers' own ``DDPMPipeline`` with
the same network and the same scheduler configuration (the plain loop of its examples), interleaved.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diffusion_speed.py --sampling --only "16-32-64 x1"
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from atelier.diffusion import training_loss
from atelier.models import build
from atelier.models.diffusion import DiffusionConfig

# With one thread, the process's CPU time: a busy shared machine then slows the wall clock, not the figures.
CLOCK = time.process_time

CANDIDATES = {
    "16-32-64 x1": dict(block_out_channels=(16, 32, 64), layers_per_block=1, attention_head_dim=16),
    "32-64-64 x1": dict(block_out_channels=(32, 64, 64), layers_per_block=1),
    "32-64-128 x1": dict(block_out_channels=(32, 64, 128), layers_per_block=1),
    "32-64-64 x2": dict(block_out_channels=(32, 64, 64), layers_per_block=2),
    "64-128-128 x1": dict(block_out_channels=(64, 128, 128), layers_per_block=1),
}


def make(name: str, mode: str) -> tuple[torch.nn.Module, DiffusionConfig, torch.optim.Optimizer]:
    params = {"name": "diffusion", **CANDIDATES[name]}
    cfg = DiffusionConfig.model_validate({k: v for k, v in params.items() if k != "name"})
    unet = build(params, resolution=32, channels=1)["unet"]
    if "cl" in mode:
        unet = unet.to(memory_format=torch.channels_last)
    if mode == "reference":   # the example's optimiser
        return unet, cfg, torch.optim.AdamW(unet.parameters(), lr=1e-4, weight_decay=1e-6)
    return unet, cfg, torch.optim.Adam(unet.parameters(), lr=2e-4)


def reference_time(unet: torch.nn.Module, cfg: DiffusionConfig, opt: torch.optim.Optimizer, x: torch.Tensor,
                   steps: int) -> float:
    """diffusers' examples/unconditional_image_generation loop body, minus Accelerate and EMA."""
    from atelier.models.diffusion import import_diffusers

    sched = import_diffusers().DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps,
                                             beta_schedule="squaredcos_cap_v2")
    inner = unet.unet
    started = CLOCK()
    for _ in range(steps):
        noise = torch.randn(x.shape)
        t = torch.randint(0, sched.config.num_train_timesteps, (x.shape[0],)).long()
        noisy = sched.add_noise(x, noise, t)
        loss = torch.nn.functional.mse_loss(inner(noisy, t).sample.float(), noise.float())
        loss.backward()
        opt.step()
        opt.zero_grad()
    return (CLOCK() - started) / steps


def step_time(unet: torch.nn.Module, cfg: DiffusionConfig, opt: torch.optim.Optimizer, x: torch.Tensor,
              steps: int, mode: str) -> float:
    if mode == "reference":
        return reference_time(unet, cfg, opt, x, steps)
    bf16 = "bf16" in mode
    gen = torch.Generator().manual_seed(0)
    started = CLOCK()
    for _ in range(steps):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            loss = training_loss(unet, x, None, cfg, generator=gen)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (CLOCK() - started) / steps


def sampling_table(args: argparse.Namespace) -> None:
    """Images/s of 20-step DPM-Solver++ sampling: atelier's sampler vs diffusers' pipeline, same U-Net."""
    from atelier.diffusion import make_scheduler, sample
    from atelier.models.diffusion import import_diffusers

    d = import_diffusers()
    for name in args.only:
        unet, cfg, _ = make(name, "fp32")
        unet.eval()
        pipe = d.DDPMPipeline(unet=unet.unet, scheduler=make_scheduler(cfg, "dpm++"))
        pipe.set_progress_bar_config(disable=True)

        def ours(bf16: bool, unet: torch.nn.Module = unet, cfg: DiffusionConfig = cfg) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                sample(unet, cfg, args.batch, sampler="dpm++", steps=20, seed=0)

        def theirs(pipe: object = pipe) -> None:
            pipe(batch_size=args.batch, num_inference_steps=20, generator=torch.Generator().manual_seed(0),  # type: ignore[operator]
                 output_type="np")

        modes = {"diffusers DDPMPipeline": theirs, "atelier fp32": lambda: ours(False),
                 "atelier bf16": lambda: ours(True)}
        for fn in modes.values():   # warm-up
            fn()
        times: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(args.rounds):
            for m, fn in modes.items():
                started = CLOCK()
                fn()
                times[m].append(CLOCK() - started)
        print(f"{name}: {args.batch} images x 20 DPM-Solver++ steps, 32 px, threads={args.threads} (median of "
              f"{args.rounds} rounds; shared machine)")
        print("| sampler | img/s | vs diffusers |")
        print("|---|---|---|")
        ref = statistics.median(times["diffusers DDPMPipeline"])
        for m in modes:
            t = statistics.median(times[m])
            print(f"| {m} | {args.batch / t:.1f} | {ref / t:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per candidate per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=list(CANDIDATES), choices=list(CANDIDATES))
    ap.add_argument("--sampling", action="store_true", help="time sampling instead of training")
    ap.add_argument("--modes", nargs="*", default=["reference", "fp32", "bf16", "bf16+cl"],
                    choices=["reference", "fp32", "cl", "bf16", "bf16+cl"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    global CLOCK
    CLOCK = time.process_time if args.threads == 1 else time.perf_counter
    if args.sampling:
        sampling_table(args)
        return
    x = torch.rand(args.batch, 1, 32, 32) * 2 - 1
    runs = {(n, m): make(n, m) for n in args.only for m in args.modes}
    for (_, m), (unet, cfg, opt) in runs.items():   # warm-up: oneDNN picks its kernels on the first calls
        step_time(unet, cfg, opt, x, 1, m)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for (n, m), (unet, cfg, opt) in runs.items():
            times[(n, m)].append(step_time(unet, cfg, opt, x, args.steps, m))
    clock = "process CPU time" if args.threads == 1 else "wall clock"
    print(f"threads={args.threads} batch={args.batch} torch={torch.__version__} (median of {args.rounds} rounds "
          f"x {args.steps} steps, {clock}; shared machine)")
    print(f"| U-Net | params | {' | '.join(f'{m} img/s' for m in args.modes)} |")
    print("|---|---|" + "---|" * len(args.modes))
    for n in args.only:
        params = sum(p.numel() for p in runs[(n, args.modes[0])][0].parameters())
        rates = [args.batch / statistics.median(times[(n, m)]) for m in args.modes]
        print(f"| {n} | {params / 1e6:.2f} M | {' | '.join(f'{r:.0f}' for r in rates)} |")


if __name__ == "__main__":
    main()
