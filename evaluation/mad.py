"""The six MAD tasks (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid Architectures").

Each generator writes one instance from a numpy Generator, following the definitions of MAD's
`mad/data/instances.py`; the benchmark settings are those of its `configs/tasks/*.yml`. Two
conventions of MAD matter for the scores:
- the recall tasks train on every next token (inputs shifted by one) but are tested only on the
  values whose key was seen before (`multi_query`) and on the final probe;
- the score is the macro-averaged class accuracy over the test set (torchmetrics'
  MulticlassAccuracy, average="macro"), and the MAD score is the mean over the six tasks.
Compression needs the autoencoder backbone (linarch.models.MixerAutoEncoder).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from itertools import permutations

import numpy as np
import torch

from .synthetic import IGNORE, TokenSplit, split_rng, stack


class MADTask(enum.Enum):
    IN_CONTEXT_RECALL = "in-context-recall"
    FUZZY_RECALL = "fuzzy-in-context-recall"
    NOISY_RECALL = "noisy-in-context-recall"
    SELECTIVE_COPYING = "selective-copying"
    COMPRESSION = "compression"
    MEMORIZATION = "memorization"


@dataclass(frozen=True)
class MADSetting:
    """One MAD task configuration (field names as in MAD's MADConfig)."""

    task: MADTask
    vocab_size: int
    seq_len: int
    num_train_examples: int
    num_test_examples: int = 1280
    frac_noise: float = 0.0
    noise_vocab_size: int = 0
    num_tokens_to_copy: int = 0
    k_motif_size: int = 1
    v_motif_size: int = 1
    multi_query: bool = True
    kv_map_seed: int = 12345

    @property
    def autoencoder(self) -> bool:
        return self.task is MADTask.COMPRESSION


def benchmark_settings() -> tuple[MADSetting, ...]:
    """The baseline setting of each task in MAD's configs/tasks/*.yml."""
    return (
        MADSetting(MADTask.IN_CONTEXT_RECALL, vocab_size=16, seq_len=128,
                   num_train_examples=12800),
        MADSetting(MADTask.FUZZY_RECALL, vocab_size=16, seq_len=128, num_train_examples=12800,
                   k_motif_size=3, v_motif_size=3),
        MADSetting(MADTask.NOISY_RECALL, vocab_size=32, seq_len=128, num_train_examples=12800,
                   noise_vocab_size=16, frac_noise=0.2),
        MADSetting(MADTask.SELECTIVE_COPYING, vocab_size=16, seq_len=256,
                   num_train_examples=12800, num_tokens_to_copy=16),
        MADSetting(MADTask.COMPRESSION, vocab_size=16, seq_len=32, num_train_examples=12800),
        MADSetting(MADTask.MEMORIZATION, vocab_size=256, seq_len=32, num_train_examples=256),
    )


Instance = tuple[np.ndarray, np.ndarray]


def in_context_recall(s: MADSetting, rng: np.random.Generator, training: bool) -> Instance:
    """Key-value pairs with repeated keys; plain (frac_noise=0) or noisy recall."""
    copy_prefix = s.vocab_size - 1
    non_special = (s.vocab_size if s.multi_query else s.vocab_size - 1) - s.noise_vocab_size
    key_vocab = np.arange(non_special // 2)
    value_vocab = np.arange(non_special // 2, non_special)
    noise_vocab = np.arange(non_special, non_special + s.noise_vocab_size)
    kv_map: dict[int, int] = {}
    inputs: list[int] = []
    targets: list[int] = []
    num_pairs = s.seq_len // 2
    kept = int(rng.integers(num_pairs))  # one pair is never noise
    for i in range(num_pairs - 1):
        if s.frac_noise > 0 and i != kept and rng.random() < s.frac_noise:
            inputs += [int(x) for x in rng.choice(noise_vocab, size=2)]
            targets += [IGNORE, IGNORE]
            continue
        k = int(rng.choice(key_vocab))
        seen = k in kv_map
        v = kv_map[k] if seen else int(rng.choice(value_vocab))
        kv_map[k] = v
        inputs += [k, v]
        targets += [IGNORE, v if seen and s.multi_query else IGNORE]
    probe = int(rng.choice(list(kv_map)))
    if not s.multi_query:
        inputs.append(copy_prefix)
        targets.append(IGNORE)
    inputs += [probe, kv_map[probe]]
    targets += [IGNORE, kv_map[probe]]
    return _shifted(np.array(inputs), np.array(targets), training)


def _motifs(vocab: np.ndarray, size: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    values = [tuple(int(x) for x in p) for p in permutations(vocab.tolist(), size)]
    rng.shuffle(values)
    return values


def fuzzy_recall(s: MADSetting, rng: np.random.Generator, training: bool) -> Instance:
    """Keys and values are motifs of 1..k (1..v) tokens; test keys have the full k tokens."""
    km, vm = s.k_motif_size, s.v_motif_size
    copy_prefix = s.vocab_size - 1
    pad = s.vocab_size - 1 if s.multi_query else s.vocab_size - 2
    non_special = (s.vocab_size - 1 if s.multi_query else s.vocab_size - 2) - s.noise_vocab_size
    key_vocab = np.arange(non_special // 2)
    value_vocab = np.arange(non_special // 2, non_special)
    noise_vocab = np.arange(non_special, non_special + s.noise_vocab_size)
    key_sizes = list(range(1, km + 1)) if training else [km]
    keys = {size: _motifs(key_vocab, size, rng) for size in key_sizes}
    values = {size: _motifs(value_vocab, size, rng) for size in range(1, vm + 1)}

    def pick(table: dict, size: int) -> tuple[int, ...]:
        return table[size][int(rng.integers(len(table[size])))]

    k_probe_size = int(rng.choice(key_sizes))
    v_probe_size = int(rng.integers(1, vm + 1))
    k_probe, v_probe = pick(keys, k_probe_size), pick(values, v_probe_size)
    probe_size = k_probe_size + v_probe_size
    probe_at = int(rng.integers(s.seq_len - 2 * probe_size))
    probe_added = False
    kv_map: dict[tuple[int, ...], tuple[int, ...]] = {}
    presented: set[tuple[int, ...]] = set()
    inputs: list[int] = []
    targets: list[int] = []
    while len(inputs) < s.seq_len - probe_size - (km + vm):
        k_size = int(rng.choice(key_sizes))
        v_size = int(rng.integers(1, vm + 1))
        if len(inputs) >= probe_at and not probe_added:
            inputs += [*k_probe, *v_probe]
            targets += [IGNORE] * probe_size
            kv_map[k_probe] = v_probe
            presented.add(k_probe)
            probe_added = True
            continue
        if s.frac_noise > 0 and rng.random() < s.frac_noise:
            inputs += [int(x) for x in rng.choice(noise_vocab, size=k_size + v_size)]
            targets += [IGNORE] * (k_size + v_size)
            continue
        k = pick(keys, k_size)
        if k == k_probe:
            v = v_probe
            probe_added = True
        else:
            v = kv_map.setdefault(k, pick(values, v_size))
        inputs += [*k, *v]
        scored = k in presented and s.multi_query
        targets += [IGNORE] * len(k) + (list(v) if scored else [IGNORE] * len(v))
        presented.add(k)
    if not s.multi_query:
        inputs.append(copy_prefix)
        targets.append(IGNORE)
    inputs += [*k_probe, *v_probe]
    targets += [IGNORE] * k_probe_size + list(v_probe)
    n_pad = max(0, s.seq_len + 1 - len(inputs))
    inputs = [pad] * n_pad + inputs
    targets = [IGNORE] * n_pad + targets
    return _shifted(np.array(inputs), np.array(targets), training)


def selective_copying(s: MADSetting, rng: np.random.Generator, training: bool) -> Instance:
    """Tokens scattered among blanks; after the copy token, reproduce them in order."""
    copy_token, blank = s.vocab_size - 1, s.vocab_size - 2
    n = s.num_tokens_to_copy
    num_blank = s.seq_len - 2 * n - 1
    if num_blank <= 0:
        raise ValueError("seq_len must exceed 2 * num_tokens_to_copy + 1")
    to_copy = rng.integers(0, s.vocab_size - 2, size=n)
    at = rng.integers(0, n, size=num_blank)
    scattered = np.insert(to_copy, at, blank)
    inputs = np.concatenate([scattered, [copy_token], np.full(n, blank)])
    targets = np.concatenate([np.full(n + num_blank + 1, IGNORE), to_copy])
    return inputs, targets


def compression(s: MADSetting, rng: np.random.Generator, training: bool) -> Instance:
    """Random tokens then the compression token; reconstruct all of them from one state."""
    non_special = s.vocab_size - 1 - s.noise_vocab_size
    inputs = np.concatenate([rng.integers(0, non_special, size=s.seq_len - 1),
                             [s.vocab_size - 1]])
    if s.frac_noise > 0:
        noise_vocab = np.arange(non_special, non_special + s.noise_vocab_size)
        for i in range(s.seq_len - 1):
            if rng.random() < s.frac_noise:
                inputs[i] = rng.choice(noise_vocab)
    # MAD returns (inputs, inputs): every position, noise included, is reconstructed.
    return inputs, inputs.copy()


def memorization_map(s: MADSetting) -> dict[int, int]:
    """The fixed key -> value bijection, from its own seed so that it is the same in every split."""
    rng = np.random.default_rng(s.kv_map_seed)
    non_special = s.vocab_size - 1 - s.noise_vocab_size
    keys = _motifs(np.arange(non_special // 2), 1, rng)
    values = _motifs(np.arange(non_special // 2, non_special), 1, rng)
    return {k[0]: v[0] for k, v in zip(keys, values)}


def memorization(s: MADSetting, rng: np.random.Generator, training: bool) -> Instance:
    """key, insert-token pairs; the value of the key must come from the weights."""
    kv_map = memorization_map(s)
    insert = s.vocab_size - 1
    keys = np.array(sorted(kv_map))
    chosen = rng.choice(keys, size=s.seq_len // 2)
    inputs = np.stack([chosen, np.full_like(chosen, insert)], axis=1).reshape(-1)
    targets = np.stack([np.full_like(chosen, IGNORE), [kv_map[int(k)] for k in chosen]], axis=1)
    return inputs, targets.reshape(-1)


def _shifted(inputs: np.ndarray, targets: np.ndarray, training: bool) -> Instance:
    if training:
        return inputs[:-1], inputs[1:]
    return inputs[:-1], targets[1:]


GENERATORS = {
    MADTask.IN_CONTEXT_RECALL: in_context_recall,
    MADTask.NOISY_RECALL: in_context_recall,
    MADTask.FUZZY_RECALL: fuzzy_recall,
    MADTask.SELECTIVE_COPYING: selective_copying,
    MADTask.COMPRESSION: compression,
    MADTask.MEMORIZATION: memorization,
}


def generate_mad(setting: MADSetting, num_examples: int, seed: int, training: bool) -> TokenSplit:
    """`num_examples` instances; training and test splits draw from separate streams."""
    stream = f"mad-{setting.task.value}-{'train' if training else 'test'}"
    rng = split_rng(seed, stream)
    make = GENERATORS[setting.task]
    return stack([make(setting, rng, training) for _ in range(num_examples)])


def macro_accuracy(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Mean over classes of per-class recall, as torchmetrics' macro MulticlassAccuracy.

    Positions labelled -100 are ignored. A class counts when it occurs as a label or a
    prediction (tp + fp + fn > 0); one that is only ever predicted counts with accuracy 0.
    """
    keep = labels != IGNORE
    pred, gold = predictions[keep].long(), labels[keep].long()
    if gold.numel() == 0:
        raise ValueError("no labelled positions to score")
    hit = pred == gold
    tp = torch.bincount(gold[hit], minlength=num_classes).double()
    support = torch.bincount(gold, minlength=num_classes).double()
    predicted = torch.bincount(pred.clamp(0, num_classes - 1), minlength=num_classes).double()
    fn = support - tp
    fp = predicted - tp
    counted = (tp + fp + fn) > 0
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    return float(recall[counted].mean())
