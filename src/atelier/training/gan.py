"""The GAN trainer: a plain loop with explicit D and G phases, EMA, checkpoints and logs.

One step (images counted as the real images D sees):

    phase D   fake = G(z, y); logits = D(A([real, fake.detach()]), y); step D on d_loss + penalties
    phase G   every n_critic steps, D frozen: step G on g_loss(D(A(fake), y)); then EMA of G

``A`` is the augmentation (DiffAugment / ADA, identity when off), ``y`` the class labels of a
conditional model (real labels for reals, uniformly drawn ones for fakes). The penalties are WGAN-GP's
gradient penalty and lazy R1 (see atelier.losses). G runs forward once per step and its output feeds
both phases, as in pytorch/examples' DCGAN; the G phase sees the freshly updated D. Everything random
draws from the global torch generator, whose state is checkpointed with the data loader's position
and the augmentation probability, so a resumed run continues bit for bit.

Under ``torchrun`` (see :mod:`atelier.distributed`) G and D are wrapped in DDP, each process
trains on its share of the global batch (``train.batch_size``), draws its own noise (rank r > 0 reseeds
after the shared weight init), and only rank 0 writes files; logged losses are the mean over ranks.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm.auto import tqdm

from atelier import distributed
from atelier.checkpoint import CheckpointManager
from atelier.config import RunConfig, save_config
from atelier.data import BatchLoader, ImageDataset, open_source
from atelier.data.augment import Augment
from atelier.device import autocast, check_precision, make_scaler, resolve_device, tune_allocator
from atelier.errors import DataError
from atelier.imageio import save_image
from atelier.images import make_grid
from atelier.losses import get_loss, gradient_penalty, r1_penalty
from atelier.models import build
from atelier.training.ema import EMA
from atelier.training.logging import RunLogger, plot_losses

__all__ = ["GANTrainer", "TrainResult"]


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    images_seen: int
    seconds: float
    interrupted: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    grid: Path | None = None
    loss_plot: Path | None = None
    model_card: Path | None = None


def _grid_scale(resolution: int) -> int:
    return 3 if resolution <= 32 else (2 if resolution <= 64 else 1)


class GANTrainer:
    def __init__(self, cfg: RunConfig, run_dir: str | Path, dataset: ImageDataset | None = None,
                 progress: bool | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.world, self.device = distributed.init(resolve_device(cfg.train.device))
        self.precision = cfg.train.precision
        check_precision(self.device, self.precision)
        tune_allocator()  # faster CPU steps: freed pages are reused instead of faulted in again (engine.py)
        self.dataset = dataset if dataset is not None else self._open_data()
        self.loader = BatchLoader(self.dataset, cfg.train.batch_size, seed=cfg.seed, hflip=cfg.data.hflip,
                                  crop=self._crop_size(), rank=self.world.rank, world_size=self.world.world_size)

        torch.manual_seed(cfg.seed)  # weight init is part of the seeded run
        nets = build(cfg.model, resolution=cfg.data.resolution, channels=cfg.data.channels)
        self.G, self.D = nets["G"].to(self.device), nets["D"].to(self.device)
        if cfg.train.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.ema = EMA(self.G, cfg.train.ema_half_life_kimg, cfg.train.ema_rampup) if self.uses_ema else None
        # DDP (a no-op in one process). SyncBatchNorm only exists for CUDA; on CPU each rank normalises
        # over its share of the batch.
        sync_bn = self.device.type == "cuda"
        self.G = distributed.wrap(self.G, self.device, sync_batchnorm=sync_bn)
        self.D = distributed.wrap(self.D, self.device, sync_batchnorm=sync_bn)
        if self.world.rank > 0:
            # Every rank built the same weights from cfg.seed; from here each draws its own noise and
            # dropout masks (rank 0 keeps the one-process stream).
            torch.manual_seed(self._rank_seed(0))
        betas = tuple(cfg.optim.betas)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.optim.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.optim.lr_d, betas=betas)
        # fp16 only: one loss scaler per optimiser, applied in _optimize.
        self.scalers = {"g": make_scaler(self.device, self.precision), "d": make_scaler(self.device, self.precision)}
        self.loss = get_loss(cfg.loss.name)
        self.augment = Augment(cfg.augment, cfg.train.batch_size)
        self.num_classes = int(cfg.model.get("num_classes", 0) or 0)
        self._check_labels()
        self._setup_samples()
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", keep=cfg.log.keep_checkpoints)
        self.evals = None  # FID every eval.every steps and checkpoints/best.safetensors (atelier.metrics)
        if cfg.eval.every and self.world.is_main:
            from atelier.metrics.training import TrainingEval

            self.evals = TrainingEval(cfg, self.run_dir, self.device)
        self.step = 0
        self._last_g = 0.0  # G's loss, from the last step that trained G (n_critic > 1)
        self.images_seen = 0  # images of the global batch seen so far (all ranks together)
        self.train_seconds = 0.0
        self._stop_signal: int | None = None

    def _count_images(self, batch: int) -> int:
        """Add one step's images to ``images_seen``: each of the N ranks trained on ``batch`` of them."""
        self.images_seen += batch * self.world.world_size
        return batch * self.world.world_size

    def _rank_seed(self, step: int) -> int:
        return (self.cfg.seed * 1_000_003 + step) * 7_919 + self.world.rank

    # Hooks that other trainers (pix2pix) override; the loop, checkpoints and logs are shared.
    uses_ema = True
    grid_title = "Samples (EMA generator, fixed latents)"  # the model card's heading of the progress grid

    def describe_objective(self, metrics: dict[str, float]) -> tuple[str, str]:
        """(what is optimised, its last values) for the model card's Loss and Final losses lines."""
        from atelier.training.card import _loss_text

        c, nan = self.cfg, float("nan")
        return (f"{_loss_text(c)}; Adam lr G {c.optim.lr_g:g}, D {c.optim.lr_d:g}, betas {list(c.optim.betas)}",
                f"D {metrics.get('loss_d', nan):.4f}, G {metrics.get('loss_g', nan):.4f}")

    def _open_data(self) -> ImageDataset:
        d = self.cfg.data
        return open_source(d.source, channels=d.channels, resolution=d.resolution, limit=d.limit)

    def _crop_size(self) -> int | None:
        return None

    def _check_labels(self) -> None:
        if not self.num_classes:
            return
        labels = self.dataset.labels
        if labels is None:
            raise DataError(f"model.num_classes is {self.num_classes} but {self.dataset.name} has no labels; use a "
                            "labelled source (mnist, fashion-mnist, a folder per class, an .npz with labels) or "
                            "set model.num_classes: 0")
        top = int(labels.max())
        if top >= self.num_classes:
            raise DataError(f"{self.dataset.name} has labels up to {top}, but model.num_classes is "
                            f"{self.num_classes}; set model.num_classes: {top + 1}")

    def _setup_samples(self) -> None:
        self.z_dim = int(self.cfg.model["z_dim"])
        # The progress grids always show the same latents, so changes over time are the model's. A
        # conditional model's grid has one row per class (log.grid images each).
        n = self.cfg.log.grid * (self.num_classes or self.cfg.log.grid)
        g = torch.Generator().manual_seed(self.cfg.seed + 2_718_281)
        self.fixed_z = torch.randn(n, self.z_dim, generator=g).to(self.device)
        self.fixed_y = (torch.arange(self.num_classes).repeat_interleave(self.cfg.log.grid).to(self.device)
                        if self.num_classes else None)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """This process's state (networks unwrapped from DDP: the same keys whatever the world size)."""
        state: dict[str, Any] = {
            "G": distributed.unwrap(self.G).state_dict(), "D": distributed.unwrap(self.D).state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "loader": self.loader.state_dict(), "step": self.step, "images_seen": self.images_seen,
            "train_seconds": self.train_seconds, "rng": {"cpu": torch.get_rng_state()},
            "augment": self.augment.state_dict(),
        }
        if self.ema is not None:
            state["G_ema"] = self.ema.model.state_dict()
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        for name, scaler in self.scalers.items():
            if scaler is not None:
                state[f"scaler_{name}"] = scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        distributed.unwrap(self.G).load_state_dict(state["G"])
        distributed.unwrap(self.D).load_state_dict(state["D"])
        if self.ema is not None:
            self.ema.model.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        for name, scaler in self.scalers.items():
            # A checkpoint from a bf16/fp32 run resumed in fp16 starts the scale afresh.
            if scaler is not None and f"scaler_{name}" in state:
                scaler.load_state_dict(state[f"scaler_{name}"])
        self.loader.load_state_dict(state["loader"])
        self.step, self.images_seen = int(state["step"]), int(state["images_seen"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if "augment" in state:
            self.augment.load_state_dict(state["augment"])
        rng = state["rng"]
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if self.world.distributed:
            # Each rank continues its own noise stream when the world size is unchanged (bit-exact resume);
            # on another world size, rank r > 0 starts a fresh stream seeded by the step.
            ranks = rng.get("cpu_ranks")
            if ranks is not None and ranks.shape[0] == self.world.world_size:
                torch.set_rng_state(ranks[self.world.rank].clone())
                if "cuda_ranks" in rng and self.device.type == "cuda":
                    torch.cuda.set_rng_state(rng["cuda_ranks"][self.world.rank].clone(), self.device)
            elif self.world.rank > 0:
                torch.manual_seed(self._rank_seed(self.step))

    def resume(self) -> bool:
        """Load the newest checkpoint of the run folder, if any. True when resumed."""
        found = self.ckpt.load_latest()
        if found is None:
            return False
        self.load_state_dict(found[1])
        return True

    def save_checkpoint(self) -> Path:
        """Write a checkpoint (rank 0), with every rank's RNG state; all ranks must call it together."""
        state = self.state_dict()
        if self.world.distributed:
            state["rng"]["cpu_ranks"] = distributed.all_gather_tensor(torch.get_rng_state())
            if self.device.type == "cuda":
                state["rng"]["cuda_ranks"] = distributed.all_gather_tensor(torch.cuda.get_rng_state(self.device))
        path = self.ckpt.path_for(self.step)
        if self.world.is_main:
            path = self.ckpt.save(self.step, state)
        distributed.barrier()  # no rank moves on (or exits) before the checkpoint is on disk
        return path

    # ------------------------------------------------------------------ one step
    def _g(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.G(z) if y is None else self.G(z, y)

    def _d(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.D(x) if y is None else self.D(x, y)

    def train_step(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        B = real.shape[0]
        lc = self.cfg.loss
        real = real.to(self.device, non_blocking=True)
        if self.cfg.train.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        y_real = y_fake = y_both = None
        if self.num_classes:
            y_real = labels.to(self.device)
            y_fake = torch.randint(0, self.num_classes, (B,), device=self.device)
            y_both = torch.cat([y_real, y_fake])
        z = torch.randn(B, self.z_dim, device=self.device)
        g_step = (self.step + 1) % lc.n_critic == 0

        # ---- phase D: push D(real) up and D(G(z)) down ----------------------------------------------
        self.D.requires_grad_(True)
        with autocast(self.device, self.precision), torch.set_grad_enabled(g_step):
            fake = self._g(z, y_fake)                                 # (B, C, H, W)
        with autocast(self.device, self.precision):
            # One D forward over real and fake together: D has no batch statistics, so this is the
            # same maths as two calls, in one larger (faster) convolution.
            both = self.augment(torch.cat([real, fake.detach()]))    # (2B, C, H, W)
            logits = self._d(both, y_both)                            # (2B, 1)
        d_terms = self.loss.d_loss(logits[:B], logits[B:])
        d_total = d_terms["loss"]
        if lc.gp_weight:
            gp = gradient_penalty(lambda x: self._d(x, y_real), both[:B], both[B:])
            d_terms["gp"] = gp.detach()
            d_total = d_total + lc.gp_weight * gp
        if lc.r1_gamma and self.step % lc.r1_every == 0:
            r1 = r1_penalty(lambda x: self._d(x, y_real), both[:B])
            d_terms["r1"] = r1.detach()
            d_total = d_total + (lc.r1_gamma / 2) * lc.r1_every * r1   # lazy: k times the weight, every k steps
        self.augment.observe(logits[:B])
        self._optimize(d_total, self.opt_d)
        out = {"loss_d": d_terms["loss"].item()}
        out.update({k: float(v) for k, v in d_terms.items() if k != "loss"})

        # ---- phase G: push the updated D(G(z)) up, D frozen ------------------------------------------
        if g_step:
            self.D.requires_grad_(False)
            with autocast(self.device, self.precision):
                fake_logits = self._d(self.augment(fake), y_fake)
            g_terms = self.loss.g_loss(fake_logits)
            self._optimize(g_terms["loss"], self.opt_g)
            self._last_g = g_terms["loss"].item()
        self.step += 1
        global_batch = self._count_images(B)
        if g_step:
            # G moved after n_critic global batches: the EMA's half-life counts those images.
            self.ema.update(self.G, global_batch * lc.n_critic, self.images_seen)
        out["loss_g"] = self._last_g
        out.update(self.augment.stats())
        return out

    def _optimize(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        """One optimiser step on ``loss`` (the single place where gradients are computed and applied).

        Under DDP the backward pass also averages the gradients over ranks. In fp16 the loss is scaled
        by that optimiser's GradScaler, which unscales before the step and skips steps with inf/NaN.
        """
        opt.zero_grad(set_to_none=True)
        scaler = self.scalers["g" if opt is self.opt_g else "d"]
        if scaler is None:
            loss.backward()
            opt.step()
            return
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def write_grid(self, logger: RunLogger | None = None) -> Path:
        """The progress grid of the fixed latents (fit calls it on rank 0 only)."""
        images = self.ema.model(self.fixed_z) if self.fixed_y is None else self.ema.model(self.fixed_z, self.fixed_y)
        grid = make_grid(images, nrow=self.cfg.log.grid, scale=_grid_scale(self.cfg.data.resolution))
        return self._save_grid(grid, logger, generator="ema")

    def _save_grid(self, grid: Image.Image, logger: RunLogger | None, **fields: str) -> Path:
        """Write ``samples/grid-<step>.png`` (with provenance) and show it in TensorBoard."""
        path = self.run_dir / "samples" / f"grid-{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path, {"workflow": "train-progress", "run": self.run_dir.name, "step": self.step, **fields})
        if logger is not None:
            logger.add_image("samples", grid, self.step)
        return path

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Finish the current step, write a checkpoint and return (what Ctrl-C and SIGTERM do)."""
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now (the last checkpoint stays valid)
        self._stop_signal = signum

    # ------------------------------------------------------------------ the loop
    def fit(self, callback=None) -> TrainResult:
        """Train to ``train.steps``. Under torchrun every rank calls it; rank 0 alone writes the run folder."""
        cfg, log = self.cfg, self.cfg.log
        total = cfg.train.steps
        main, world = self.world.is_main, self.world.world_size
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
        logger = RunLogger(self.run_dir, self.step, tensorboard=log.tensorboard) if main else None
        tty = sys.stderr.isatty() if self.progress is None else self.progress
        bar = tqdm(total=total, initial=self.step, unit="step", dynamic_ncols=True, disable=not (tty and main),
                   desc=self.run_dir.name)
        handlers = self._install_signal_handlers()
        last: dict[str, float] = {}
        window_t, window_imgs = 0.0, 0
        grid = None
        if self.evals is not None:
            self.evals.resume(self.step)
        try:
            while self.step < total and not self._agreed_stop():
                real, labels = self.loader.next()
                t0 = time.perf_counter()
                last = self.train_step(real, labels)
                dt = time.perf_counter() - t0
                self.train_seconds += dt
                window_t += dt
                window_imgs += real.shape[0] * world
                bar.update(1)
                if self.step % log.every == 0 or self.step == total:
                    last = distributed.all_mean(last)
                    rate = window_imgs / max(window_t, 1e-9)
                    row = {"kimg": round(self.images_seen / 1000, 3), **{k: round(v, 5) for k, v in last.items()},
                           "lr_g": self.opt_g.param_groups[0]["lr"], "lr_d": self.opt_d.param_groups[0]["lr"],
                           "img_per_s": round(rate, 1), "train_seconds": round(self.train_seconds, 2)}
                    if logger is not None:
                        logger.log(self.step, row)
                    bar.set_postfix(d=f"{last['loss_d']:.3f}", g=f"{last['loss_g']:.3f}", img_s=f"{rate:.0f}")
                    if not tty and main:
                        print(f"step {self.step}/{total}  kimg {self.images_seen / 1000:.1f}  "
                              f"loss_d {last['loss_d']:.4f}  loss_g {last['loss_g']:.4f}  img/s {rate:.0f}",
                              flush=True)
                    window_t, window_imgs = 0.0, 0
                if main and (self.step % log.sample_every == 0 or self.step == total):
                    grid = self.write_grid(logger)
                if self.step % log.checkpoint_every == 0 or self.step == total or self._agreed_stop():
                    self.save_checkpoint()
                if self.evals is not None and self.evals.due(self.step, total):
                    self.evals(self)
                if callback is not None:
                    callback(self)
            # A signal that arrived after this step's checkpoint check still gets its checkpoint.
            if self._agreed_stop() and self.ckpt.latest_path() != self.ckpt.path_for(self.step):
                self.save_checkpoint()
        finally:
            bar.close()
            if logger is not None:
                logger.close()
            self._restore_signal_handlers(handlers)
        result = TrainResult(self.run_dir, self.step, self.images_seen, self.train_seconds,
                             interrupted=self._stop_signal is not None, metrics=last)
        if self.step > 0 and main:
            result.grid = grid or self._latest_grid()
            result.loss_plot = plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png")
            from atelier.training.card import write_model_card

            result.model_card = write_model_card(self, result)
        distributed.barrier()
        return result

    def _agreed_stop(self) -> bool:
        """Whether to stop; under DDP every rank must agree on the step (a signal may reach one first)."""
        if self.world.distributed and distributed.any_flag(self._stop_signal is not None):
            self._stop_signal = self._stop_signal or signal.SIGTERM
        return self._stop_signal is not None

    def _latest_grid(self) -> Path | None:
        grids = sorted((self.run_dir / "samples").glob("grid-*.png"))
        return grids[-1] if grids else None

    def _install_signal_handlers(self) -> dict[int, Any]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, lambda signum, frame: self.request_stop(signum))
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
