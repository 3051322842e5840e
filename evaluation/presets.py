"""Budgets for each measure: quick (CPU minutes), standard (CPU hour), paper (published sizes).

A preset fixes everything but the mixer and the seed: the problems (data settings and backbone
shape) and the training budget. Candidate and baseline always run the same preset.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from .mad import MADSetting, MADTask, benchmark_settings
from .mqar import MQARSetting
from .problems import LMProblem, MADProblem, ModelShape, MQARProblem, Problem
from .results import Metric
from .text_data import TextSource
from .trainer import TrainConfig


class TaskKind(enum.Enum):
    MQAR = "mqar"
    MAD = "mad"
    LM = "lm"


class Preset(enum.Enum):
    TINY = "tiny"          # seconds: for tests of the machinery, measures nothing
    QUICK = "quick"        # minutes per seed on one CPU thread
    STANDARD = "standard"  # about an hour for a 3-seed comparison on a CPU
    PAPER = "paper"        # the published sizes (a GPU)


@dataclass(frozen=True)
class Budget:
    """What one task at one preset trains: its problems, their budgets, and its headline metric.

    `metric` aggregates the problems: MQAR and LM have one problem, MAD's score is the mean
    accuracy over its six.
    """

    task: TaskKind
    preset: Preset
    problems: tuple[tuple[Problem, TrainConfig], ...]
    metric: Metric


def mqar_budget(preset: Preset) -> Budget:
    table = {
        # setting, shape, train examples, test examples, steps, batch, lr
        Preset.TINY: (MQARSetting(vocab_size=256, seq_len=32, num_kv_pairs=4),
                      ModelShape(32, 2, 2, use_mlp=False), 256, 64, 12, 16, 3e-3),
        Preset.QUICK: (MQARSetting(vocab_size=8192, seq_len=64, num_kv_pairs=4),
                       ModelShape(64, 2, 2, use_mlp=False), 64_000, 1000, 1000, 64, 3e-3),
        Preset.STANDARD: (MQARSetting(vocab_size=8192, seq_len=128, num_kv_pairs=8),
                          ModelShape(128, 2, 2, use_mlp=False), 192_000, 3000, 3000, 64, 2e-3),
        Preset.PAPER: (MQARSetting(vocab_size=8192, seq_len=256, num_kv_pairs=16),
                       ModelShape(256, 2, 2, use_mlp=False), 100_000, 3000, 25_000, 256, 1e-3),
    }
    setting, shape, n_train, n_test, steps, batch, lr = table[preset]
    problem = MQARProblem(setting, shape, n_train, n_test)
    config = TrainConfig(steps=steps, batch_size=batch, lr=lr, weight_decay=0.1,
                         eval_every=max(1, steps // 5))
    return Budget(TaskKind.MQAR, preset, ((problem, config),), problem.metric)


def _scaled_mad(setting: MADSetting, preset: Preset) -> MADSetting:
    """MAD's baseline settings, shortened for the CPU presets."""
    if preset is Preset.PAPER:
        return setting
    if preset is Preset.STANDARD:
        return replace(setting, num_train_examples=min(setting.num_train_examples, 6400),
                       num_test_examples=512)
    tiny = preset is Preset.TINY
    seq = {MADTask.SELECTIVE_COPYING: 64, MADTask.COMPRESSION: 16,
           MADTask.MEMORIZATION: 32}.get(setting.task, 64)
    if tiny:
        seq = min(seq, 32)
    copy = 8 if setting.task is MADTask.SELECTIVE_COPYING else setting.num_tokens_to_copy
    if tiny and copy:
        copy = 4
    n_train = 64 if tiny else min(setting.num_train_examples, 4096)
    return replace(setting, seq_len=seq, num_tokens_to_copy=copy, num_train_examples=n_train,
                   num_test_examples=32 if tiny else 256)


def mad_budget(preset: Preset) -> Budget:
    shape = {
        Preset.TINY: ModelShape(32, 2, 2),
        Preset.QUICK: ModelShape(64, 2, 2),
        Preset.STANDARD: ModelShape(128, 2, 4),
        Preset.PAPER: ModelShape(128, 2, 4),
    }[preset]
    steps, batch, lr, wd = {
        Preset.TINY: (8, 8, 3e-3, 0.0),
        Preset.QUICK: (400, 32, 3e-3, 0.0),
        Preset.STANDARD: (1500, 64, 1e-3, 0.0),
        # MAD: 12,800 examples x 200 epochs at batch 128, lr 5e-4 (of 1e-4, 5e-4, 1e-3), wd 0
        Preset.PAPER: (20_000, 128, 5e-4, 0.0),
    }[preset]
    problems = []
    for setting in benchmark_settings():
        problem = MADProblem(_scaled_mad(setting, preset), shape)
        config = TrainConfig(steps=steps, batch_size=batch, lr=lr, weight_decay=wd,
                             min_lr_ratio=1e-6 / lr if preset is Preset.PAPER else 0.0,
                             eval_every=max(1, steps // 4))
        problems.append((problem, config))
    return Budget(TaskKind.MAD, preset, tuple(problems), Metric("mad_score", True))


def lm_budget(preset: Preset, text: TextSource | None = None) -> Budget:
    default_text = {
        Preset.TINY: TextSource(max_train_bytes=60_000, max_val_bytes=8_000),
        Preset.QUICK: TextSource(max_train_bytes=2_000_000, max_val_bytes=200_000),
        Preset.STANDARD: TextSource(max_train_bytes=10_000_000, max_val_bytes=500_000),
        Preset.PAPER: TextSource(max_train_bytes=10**12, max_val_bytes=5_000_000),
    }[preset]
    text = text or default_text
    # shape, seq len, steps, batch, lr, val windows
    shape, seq, steps, batch, lr, val = {
        Preset.TINY: (ModelShape(32, 2, 2), 32, 10, 4, 3e-3, 8),
        Preset.QUICK: (ModelShape(64, 2, 2), 128, 400, 16, 3e-3, 64),
        Preset.STANDARD: (ModelShape(128, 4, 4), 256, 2000, 16, 2e-3, 128),
        # ASI-Arch's exploration scale: 8 layers, d 256, 8 heads, 2000 x 256 x 2048 tokens
        Preset.PAPER: (ModelShape(256, 8, 8), 2048, 2000, 256, 1e-3, 256),
    }[preset]
    problem = LMProblem(text, shape, seq_len=seq, val_windows=val)
    config = TrainConfig(steps=steps, batch_size=batch, lr=lr, weight_decay=0.1,
                         betas=(0.9, 0.95), eval_every=max(1, steps // 5))
    return Budget(TaskKind.LM, preset, ((problem, config),), problem.metric)


def budget_for(task: TaskKind, preset: Preset, text: TextSource | None = None) -> Budget:
    if task is TaskKind.MQAR:
        return mqar_budget(preset)
    if task is TaskKind.MAD:
        return mad_budget(preset)
    return lm_budget(preset, text)
