"""The one training loop every measure uses.

AdamW with decoupled weight decay on matrices only, linear warmup then cosine decay, gradient
clipping, fp32 on CPU and bf16 autocast on CUDA, periodic held-out evaluation, checkpoints and a
progress bar. A run never raises: it ends with an `Outcome` (NaN, divergence, time or memory
limit, error) and keeps whatever it measured, so a search loop can count failures by kind.
Seeding is complete (Python, numpy, torch, batch order), so on CPU the same seed gives the same
metric bit for bit.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .mixers import MixerSpec
from .problems import ModelShape, Problem, autocast
from .results import CurvePoint, Curves, Outcome, Timings, TrainResult

INIT_SALT_STRIDE = 1_000_003  # a mixer's init_salt moves its initialisation this far


@dataclass(frozen=True)
class TrainConfig:
    """Budget and optimiser settings of one run. `seed` fixes init, data and batch order."""

    steps: int
    batch_size: int
    lr: float
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_fraction: float = 0.1
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 0
    log_every: int = 10
    time_limit_s: float | None = None
    memory_limit_mb: float | None = None
    diverge_margin: float = 1.0  # nats above the problem's chance loss (see `train_model`)
    checkpoint_every: int = 0
    seed: int = 0

    def lr_at(self, step: int) -> float:
        """Learning rate after `step` optimiser steps: linear warmup, then cosine decay."""
        warmup = max(1, round(self.warmup_fraction * self.steps))
        if step < warmup:
            return self.lr * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, self.steps - warmup))
        floor = self.min_lr_ratio * self.lr
        return floor + (self.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _Stop(Exception):
    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def memory_mb(device: torch.device) -> float:
    """Current resident memory of this process (CPU) or peak allocated memory (CUDA)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def optimizer_for(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW; matrices decay, vectors (biases, norm weights, per-head gates) do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def save_checkpoint(model: nn.Module, directory: Path, step: int, config: TrainConfig,
                    problem: Problem | None = None) -> None:
    """The model (save_pretrained when it has one), the problem's extra files, the step."""
    directory.mkdir(parents=True, exist_ok=True)
    if problem is not None:
        problem.save_artifacts(directory)
    if hasattr(model, "save_pretrained"):
        from transformers.utils import logging as hf_logging

        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model.save_pretrained(directory)
        finally:
            if shown:
                hf_logging.enable_progress_bar()
    else:
        torch.save(model.state_dict(), directory / "model.pt")
    state = {"step": step, "config": asdict(config)}
    (directory / "trainer_state.json").write_text(json.dumps(state, indent=2))


def train_problem(
    problem: Problem,
    mixer: MixerSpec,
    shape: ModelShape,
    config: TrainConfig,
    *,
    device: torch.device | None = None,
    checkpoint_dir: Path | None = None,
    progress: bool = False,
    data=None,
) -> tuple[TrainResult, nn.Module | None]:
    """Seed, make the data, build the model and train it; never raises."""
    device = device or default_device()
    started = time.perf_counter()
    try:
        seed_everything(config.seed)
        data = data if data is not None else problem.make_data(config.seed)
        torch.manual_seed(config.seed + INIT_SALT_STRIDE * mixer.init_salt)
        model = problem.build_model(mixer, shape).to(device)
    except Exception as exc:  # a candidate that does not even build is a typed failure
        outcome = Outcome.OOM if _is_oom(exc) else Outcome.ERROR
        return TrainResult(outcome, {}, Curves(), Timings(), 0, _describe(exc)), None
    setup = time.perf_counter() - started
    result = train_model(model, problem, data, config, device=device,
                         checkpoint_dir=checkpoint_dir, progress=progress, setup_s=setup)
    return result, model


def train_model(
    model: nn.Module,
    problem: Problem,
    data,
    config: TrainConfig,
    *,
    device: torch.device,
    checkpoint_dir: Path | None = None,
    progress: bool = False,
    setup_s: float = 0.0,
) -> TrainResult:
    """Train `model` on `problem` for `config.steps` steps, evaluate it, report the outcome.

    DIVERGED means the smoothed training loss rose `diverge_margin` nats above the problem's
    chance loss (a uniform guess over the vocabulary, about where every run starts): the model
    then predicts worse than knowing nothing. A rule relative to the first loss would never
    fire on MQAR, whose loss starts at ln V and, when training blows up, stays near it.
    """
    generator = torch.Generator().manual_seed(config.seed)
    batches = problem.batches(data, config.batch_size, generator)
    optimizer = optimizer_for(model, config)
    losses: list[CurvePoint] = []
    lrs: list[CurvePoint] = []
    evals: dict[str, list[CurvePoint]] = {}
    outcome, error, done, tokens = Outcome.OK, "", 0, 0
    train_s = eval_s = 0.0
    smoothed = None
    diverge_at = problem.chance_loss + config.diverge_margin
    cpu_started = time.process_time()
    bar = tqdm(total=config.steps, disable=not progress, desc=problem.name, leave=False)
    started = time.perf_counter()
    try:
        model.train()
        for step in range(config.steps):
            lr = config.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = next(batches)
            inputs, labels = batch.inputs.to(device), batch.labels.to(device)
            with autocast(device):
                loss, aux = problem.loss(model, type(batch)(inputs, labels))
            total = loss.float() + aux.float()
            value = float(loss.detach())
            if not math.isfinite(value) or not math.isfinite(float(total.detach())):
                raise _Stop(Outcome.NAN, f"loss {value} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if not math.isfinite(float(norm)):
                raise _Stop(Outcome.NAN, f"gradient norm {float(norm)} at step {step}")
            optimizer.step()
            done = step + 1
            tokens += problem.tokens_per_example(batch) * inputs.shape[0]
            smoothed = value if smoothed is None else 0.9 * smoothed + 0.1 * value
            if step >= 10 and smoothed > diverge_at:
                raise _Stop(Outcome.DIVERGED, f"smoothed loss {smoothed:.3g} at step {step}, "
                            f"above chance ({problem.chance_loss:.3g}) + {config.diverge_margin}")
            if step % config.log_every == 0 or step == config.steps - 1:
                losses.append(CurvePoint(step, value))
                lrs.append(CurvePoint(step, lr))
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            if config.eval_every and (step + 1) % config.eval_every == 0 and \
                    step + 1 < config.steps:
                spent, metrics = _timed_eval(model, problem, data, device)
                eval_s += spent
                for name, v in metrics.items():
                    evals.setdefault(name, []).append(CurvePoint(step + 1, v))
            if config.checkpoint_every and checkpoint_dir is not None and \
                    (step + 1) % config.checkpoint_every == 0:
                save_checkpoint(model, checkpoint_dir, step + 1, config, problem)
            elapsed = time.perf_counter() - started
            if config.time_limit_s is not None and elapsed > config.time_limit_s:
                raise _Stop(Outcome.TIMEOUT, f"time limit {config.time_limit_s}s at step {done}")
            if config.memory_limit_mb is not None and memory_mb(device) > config.memory_limit_mb:
                raise _Stop(Outcome.OOM, f"memory {memory_mb(device):.0f} MB over the limit")
    except _Stop as stop:
        outcome, error = stop.outcome, str(stop)
    except Exception as exc:
        outcome = Outcome.OOM if _is_oom(exc) else Outcome.ERROR
        error = _describe(exc)
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    finally:
        bar.close()
    train_s = time.perf_counter() - started - eval_s
    metrics: dict[str, float] = {}
    if outcome in (Outcome.OK, Outcome.TIMEOUT):
        try:
            spent, metrics = _timed_eval(model, problem, data, device)
            eval_s += spent
            for name, v in metrics.items():
                evals.setdefault(name, []).append(CurvePoint(done, v))
            if checkpoint_dir is not None:
                save_checkpoint(model, checkpoint_dir, done, config, problem)
        except Exception as exc:
            outcome = Outcome.OOM if _is_oom(exc) else Outcome.ERROR
            error = _describe(exc)
    if losses:
        metrics["final_train_loss"] = losses[-1].value
    curves = Curves(tuple(losses), tuple(lrs), {k: tuple(v) for k, v in evals.items()})
    timings = Timings(setup_s=setup_s, train_s=train_s, eval_s=eval_s, tokens_seen=tokens,
                      cpu_s=time.process_time() - cpu_started)
    return TrainResult(outcome, metrics, curves, timings, done, error)


def _timed_eval(model, problem: Problem, data, device) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    model.eval()
    try:
        metrics = problem.evaluate(model, data, device)
    finally:
        model.train()
    return time.perf_counter() - started, metrics


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _describe(exc: BaseException) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(lines[-6:])[-4000:]
