"""The one training loop: every family trains through it, as a :class:`~atelier.training.task.Task`.

    for each step until a budget (train.steps / train.minutes / train.images) is reached:
        batch = task.data.next(); counters += 1 step, the global batch; terms = task.step(batch)
        every log.every:            a metrics.jsonl line (+ TensorBoard), the progress bar or a plain log line
        every log.sample_every:     samples/grid-<step>.png from the task's fixed inputs
        every log.checkpoint_every: a checkpoint (and at the end, and on Ctrl-C / SIGTERM)
        every eval.every:           FID of the task's sampler, checkpoints/best.safetensors when it improves
    at the end: the loss plot and the model card

Exact resume: a checkpoint holds the networks, EMAs, optimisers, the data position, the global RNG state
(every rank's, under torchrun) and the task's extra state, so a resumed run continues bit for bit. Under
``torchrun`` every rank runs this loop on its share of the global batch, only rank 0 writes, and the ranks
agree on when to stop (a signal may reach one first).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from atelier import distributed
from atelier.config import RunConfig
from atelier.device import check_precision, resolve_device, tune_allocator
from atelier.imageio import save_image
from atelier.runs import Run
from atelier.threads import configure_threads
from atelier.throughput import ThroughputMonitor
from atelier.training.budget import Budget
from atelier.training.card import write_model_card
from atelier.training.logging import RunLogger, plot_losses
from atelier.training.result import TrainResult
from atelier.training.task import Context, Task

__all__ = ["TrainResult", "Trainer"]


class Trainer:
    """Trains one task into one run folder. ``Trainer(cfg, run, GANTask).fit()``."""

    def __init__(self, cfg: RunConfig, run: Run | str | Path, task: type[Task], progress: bool | None = None,
                 **task_options: Any) -> None:
        self.cfg = cfg
        self.run = run if isinstance(run, Run) else Run(run)
        self.progress = progress
        self.world, self.device = distributed.init(resolve_device(cfg.train.device))
        check_precision(self.device, cfg.train.precision)
        tune_allocator()  # faster CPU steps: freed pages are reused instead of faulted in again (device.py)
        self.ctx = Context(cfg, self.run, self.world, self.device)
        torch.manual_seed(cfg.seed)  # weight init is part of the seeded run
        self.task = task(cfg, self.ctx, **task_options)
        if self.world.rank > 0:
            # Every rank built the same weights from cfg.seed; from here each draws its own noise and dropout
            # masks (rank 0 keeps the one-process stream).
            torch.manual_seed(self._rank_seed(0))
        self.budget = Budget(cfg.train)
        self.ckpt = self.run.checkpoints(keep=cfg.log.keep_checkpoints)
        self.train_seconds = 0.0
        self.resumed_from: int | None = None
        self._stop_signal: int | None = None
        self.evals = None  # FID every eval.every steps and checkpoints/best.safetensors
        if cfg.eval.every and self.world.is_main:
            from atelier.training.evaluation import TrainingEval  # only runs that evaluate load the evaluators

            self.evals = TrainingEval(cfg, self.run, self.task.sampler(), self.device)

    # ------------------------------------------------------------------ counters
    @property
    def step(self) -> int:
        return self.ctx.step

    @property
    def images_seen(self) -> int:
        return self.ctx.images_seen

    @property
    def run_dir(self) -> Path:
        return self.run.path

    def _rank_seed(self, step: int) -> int:
        return (self.cfg.seed * 1_000_003 + step) * 7_919 + self.world.rank

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """This process's state (networks unwrapped from DDP: the same keys whatever the world size)."""
        t = self.task
        state: dict[str, Any] = {name: distributed.unwrap(net).state_dict() for name, net in t.networks.items()}
        state.update({f"{name}_ema": ema.model.state_dict() for name, ema in t.emas.items()})
        state.update({name: opt.state_dict() for name, opt in t.optimizers.items()})
        for name, opt in t.optimizers.items():
            scaler = self.ctx.scaler(opt)
            if scaler is not None:
                state[f"scaler_{name}"] = scaler.state_dict()
        if t.data is not None:
            state["loader"] = t.data.state_dict()
        state.update(step=self.step, images_seen=self.images_seen, train_seconds=self.train_seconds,
                     rng={"cpu": torch.get_rng_state()})
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        state.update(t.extra_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        t = self.task
        for name, net in t.networks.items():
            distributed.unwrap(net).load_state_dict(state[name])
        for name, ema in t.emas.items():
            ema.model.load_state_dict(state[f"{name}_ema"])
        for name, opt in t.optimizers.items():
            opt.load_state_dict(state[name])
            scaler = self.ctx.scaler(opt)
            # A checkpoint from a bf16/fp32 run resumed in fp16 starts the scale afresh.
            if scaler is not None and f"scaler_{name}" in state:
                scaler.load_state_dict(state[f"scaler_{name}"])
        if t.data is not None and "loader" in state:
            t.data.load_state_dict(state["loader"])
        self.ctx.step, self.ctx.images_seen = int(state["step"]), int(state.get("images_seen", 0))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        t.load_extra_state(state)
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
        self.resumed_from = self.step
        return True

    def save_checkpoint(self, best: bool = False) -> Path:
        """Write a checkpoint (rank 0), with every rank's RNG state; all ranks must call it together
        (``best``: checkpoints/best.safetensors, rank 0 only, for the evaluation hook)."""
        state = self.state_dict()
        if best:
            return self.ckpt.save_best(self.step, state)
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
    def train_step(self) -> dict[str, float]:
        """Draw the next batch and train one step on it (counters first: the task sees this step's)."""
        real, labels = self.task.data.next()  # type: ignore[union-attr]
        clock = time.process_time if self.cfg.train.clock == "cpu" else time.perf_counter
        t0 = clock()
        self.ctx.step += 1
        self.ctx.images_seen += self.task.batch_images(real) * self.world.world_size
        terms = self.task.step(real, labels)
        self.train_seconds += clock() - t0
        return terms

    def write_grid(self, logger: RunLogger | None = None) -> Path:
        """``samples/grid-<step>.png`` (with provenance), shown in TensorBoard too (rank 0 only)."""
        grid = self.task.grid()
        path = self.run.samples_dir / f"grid-{self.step:07d}.png"
        save_image(grid.image, path, {"workflow": "train-progress", "run": self.run.name, "step": self.step,
                                      **grid.fields})
        if logger is not None:
            logger.add_image("samples", grid.image, self.step)
        return path

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Finish the current step, write a checkpoint and return (what Ctrl-C and SIGTERM do)."""
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now (the last checkpoint stays valid)
        self._stop_signal = signum

    # ------------------------------------------------------------------ the loop
    def fit(self, callback: Callable[[Trainer], None] | None = None) -> TrainResult:
        """Train until a budget is reached. Under torchrun every rank calls it; rank 0 alone writes."""
        cfg, log = self.cfg, self.cfg.log
        main = self.world.is_main
        budget = self.budget
        if budget.reached(self.step, self.images_seen, self.train_seconds):
            return TrainResult(self.run.path, self.step, self.images_seen, self.train_seconds,
                               resumed_from=self.resumed_from, nothing_to_do=True)
        if main:
            self.run.write_config(cfg)
        logger = RunLogger(self.run.path, self.step, tensorboard=log.tensorboard) if main else None
        tty = sys.stderr.isatty() if self.progress is None else self.progress
        bar = budget.progress_bar(self.step, self.images_seen, self.train_seconds, desc=self.run.name,
                                  disable=not (tty and main))
        handlers = self._install_signal_handlers()
        # CPU threads from the free cores, re-checked while training (not under torchrun: ranks stay in step).
        threads = (configure_threads(cfg.train.threads, adaptive=not self.world.distributed)
                   if self.device.type == "cpu" else None)
        watch, say = ThroughputMonitor(), (bar.write if tty else print)
        last: dict[str, float] = {}
        window_t, window_imgs = 0.0, 0
        start_wall, start_fraction = time.perf_counter(), budget.fraction(self.step, self.images_seen,
                                                                           self.train_seconds)
        grid = None
        if self.evals is not None:
            self.evals.resume(self.step)
        try:
            while not self._agreed_stop():
                before = (self.images_seen, self.train_seconds)
                last = self.train_step()
                window_imgs += self.images_seen - before[0]
                window_t += self.train_seconds - before[1]
                if threads is not None and main and (note := threads.observe(self.images_seen - before[0],
                                                                              self.train_seconds - before[1])):
                    say(note)
                done = budget.reached(self.step, self.images_seen, self.train_seconds)
                budget.update_bar(bar, self.step, self.images_seen, self.train_seconds)
                if self.step % log.every == 0 or done:
                    last = distributed.all_mean(last)
                    rate = window_imgs / max(window_t, 1e-9)
                    row = {"kimg": round(self.images_seen / 1000, 3), **{k: round(v, 5) for k, v in last.items()},
                           **{f"lr_{n.removeprefix('opt_')}": o.param_groups[0]["lr"]
                              for n, o in self.task.optimizers.items()},
                           "img_per_s": round(rate, 1), "train_seconds": round(self.train_seconds, 2),
                           **({"threads": threads.threads} if threads is not None else {})}
                    if (note := watch.update(rate, threads.threads if threads else None)) and main:
                        say(note)
                    if logger is not None:
                        logger.log(self.step, row)
                    bar.set_postfix(**self.task.progress(last), img_s=f"{rate:.0f}",
                                    **({"cpu": watch.note} if watch.note else {}))
                    if not tty and main:
                        fraction = budget.fraction(self.step, self.images_seen, self.train_seconds)
                        eta = budget.eta(time.perf_counter() - start_wall, start_fraction, fraction)
                        terms = "  ".join(f"{k} {v:.4f}" for k, v in list(last.items())[:4])
                        print(f"step {self.step}{budget.of_steps()}  kimg {self.images_seen / 1000:.1f}  {terms}  "
                              f"img/s {rate:.0f}  eta {eta}", flush=True)
                    window_t, window_imgs = 0.0, 0
                if main and (self.step % log.sample_every == 0 or done):
                    grid = self.write_grid(logger)
                stop = done or self._agreed_stop()
                if self.step % log.checkpoint_every == 0 or stop:
                    self.save_checkpoint()
                if self.evals is not None and (self.evals.due(self.step) or done):
                    self.evals(self.step, save_best=lambda: self.save_checkpoint(best=True))
                if callback is not None:
                    callback(self)
                if done:
                    break
            # A signal that arrived after this step's checkpoint check still gets its checkpoint.
            if self._agreed_stop() and self.ckpt.latest_path() != self.ckpt.path_for(self.step):
                self.save_checkpoint()
        finally:
            bar.close()
            if logger is not None:
                logger.close()
            self._restore_signal_handlers(handlers)
        result = TrainResult(self.run.path, self.step, self.images_seen, self.train_seconds,
                             interrupted=self._stop_signal is not None, metrics=last, resumed_from=self.resumed_from)
        if self.step > 0 and main:
            result.grid = grid or self._latest_grid()
            result.loss_plot = plot_losses(self.run.metrics_path, self.run.path / "loss.png")
            result.model_card = write_model_card(self.run, self.cfg, self.task, result, device=str(self.device),
                                                 budget=self.budget.describe())
        distributed.barrier()
        return result

    def _agreed_stop(self) -> bool:
        """Whether to stop; under DDP every rank must agree on the step (a signal may reach one first)."""
        if self.world.distributed and distributed.any_flag(self._stop_signal is not None):
            self._stop_signal = self._stop_signal or signal.SIGTERM
        return self._stop_signal is not None

    def _latest_grid(self) -> Path | None:
        grids = sorted(self.run.samples_dir.glob("grid-*.png"))
        return grids[-1] if grids else None

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, lambda signum, frame: self.request_stop(signum))
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
