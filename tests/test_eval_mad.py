"""The six MAD tasks against their definitions, and MAD's macro-averaged accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from linarch.evaluation.mad import (
    MADSetting,
    MADTask,
    benchmark_settings,
    generate_mad,
    macro_accuracy,
    memorization_map,
)

SETTINGS = {s.task: s for s in benchmark_settings()}


def test_the_benchmark_has_mads_six_baseline_settings():
    assert set(SETTINGS) == set(MADTask)
    assert SETTINGS[MADTask.NOISY_RECALL].vocab_size == 32
    assert SETTINGS[MADTask.SELECTIVE_COPYING].seq_len == 256
    assert SETTINGS[MADTask.MEMORIZATION].num_train_examples == 256
    assert SETTINGS[MADTask.FUZZY_RECALL].k_motif_size == 3


def pairs_of(row: np.ndarray) -> list[tuple[int, int]]:
    return [(int(row[i]), int(row[i + 1])) for i in range(0, len(row) - 1, 2)]


def test_in_context_recall_scores_repeated_keys_and_the_probe():
    s = SETTINGS[MADTask.IN_CONTEXT_RECALL]
    test = generate_mad(s, 40, seed=0, training=False)
    train = generate_mad(s, 40, seed=0, training=True)
    assert test.inputs.shape == (40, s.seq_len - 1)
    half = s.vocab_size // 2  # multi-query: no copy token, keys [0, 8), values [8, 16)
    for x, y in zip(test.inputs.numpy(), test.labels.numpy()):
        full = np.append(x, -1)  # the final value is only a target
        seen: dict[int, int] = {}
        for i, (k, v) in enumerate(pairs_of(full)):
            assert 0 <= k < half
            pos = 2 * i  # input position of the key; its value is the label there
            if v == -1:  # the probe: a key seen before, its value scored
                assert k in seen and y[pos] == seen[k]
                continue
            assert half <= v < s.vocab_size
            assert seen.setdefault(k, v) == v  # one value per key in a sequence
            expected = v if list(full[0:2 * i:2]).count(k) else -100
            assert y[pos] == expected
        assert (y[1::2] == -100).all()
    # training targets are the next tokens everywhere
    assert torch.equal(train.labels[:, :-1], train.inputs[:, 1:])


def test_noisy_recall_inserts_noise_pairs_at_the_requested_rate():
    s = SETTINGS[MADTask.NOISY_RECALL]
    test = generate_mad(s, 200, seed=1, training=False)
    x, y = test.inputs.numpy(), test.labels.numpy()
    non_special = s.vocab_size - s.noise_vocab_size
    noise = x >= non_special
    assert x.max() < s.vocab_size
    assert 0.15 < noise[:, :-2].mean() < 0.25  # frac_noise 0.2, whole pairs
    assert (noise[:, 0:-1:2] == noise[:, 1::2]).all()
    assert (y[noise] == -100).all()


def test_fuzzy_recall_uses_motifs_and_left_padding():
    s = SETTINGS[MADTask.FUZZY_RECALL]
    test = generate_mad(s, 60, seed=2, training=False)
    x, y = test.inputs.numpy(), test.labels.numpy()
    assert x.shape == (60, s.seq_len)
    pad = s.vocab_size - 1
    key_end = (s.vocab_size - 1) // 2
    for row, lab in zip(x, y):
        body = row[row != pad]
        assert (row[: len(row) - len(body)] == pad).all()  # padding only on the left
        scored = np.nonzero(lab != -100)[0]
        assert len(scored) >= 1 and scored[-1] == len(row) - 1
        assert all(row[p + 1] == lab[p] for p in scored[:-1])
        assert ((lab[scored] >= key_end) & (lab[scored] < pad)).all()  # labels are values
    # test keys have the full motif size: the probe's 3 key tokens precede its value
    t = s.seq_len
    for row, lab in zip(x, y):
        m = 0
        while m < 3 and lab[t - 1 - m] != -100:
            m += 1
        assert 1 <= m <= s.v_motif_size
        key = row[t - m - 2: t - m + 1]
        assert len(key) == s.k_motif_size and (key < key_end).all()
        assert lab[t - m - 1] == -100


def test_selective_copying_copies_the_tokens_in_order():
    s = SETTINGS[MADTask.SELECTIVE_COPYING]
    split = generate_mad(s, 30, seed=3, training=True)
    n, blank, copy = s.num_tokens_to_copy, s.vocab_size - 2, s.vocab_size - 1
    for x, y in zip(split.inputs.numpy(), split.labels.numpy()):
        assert len(x) == s.seq_len
        head = x[: s.seq_len - n - 1]
        assert x[s.seq_len - n - 1] == copy and (x[s.seq_len - n:] == blank).all()
        tokens = head[head != blank]
        assert len(tokens) == n and head[-1] != blank  # MAD inserts blanks before tokens
        assert (y[: s.seq_len - n] == -100).all()
        assert (y[s.seq_len - n:] == tokens).all()


def test_compression_reconstructs_every_token():
    s = SETTINGS[MADTask.COMPRESSION]
    split = generate_mad(s, 30, seed=4, training=False)
    assert torch.equal(split.inputs, split.labels)
    assert (split.inputs[:, -1] == s.vocab_size - 1).all()
    assert (split.inputs[:, :-1] < s.vocab_size - 1).all()


def test_memorization_asks_the_same_fixed_facts():
    s = SETTINGS[MADTask.MEMORIZATION]
    kv = memorization_map(s)
    assert len(kv) == (s.vocab_size - 1) // 2 and len(set(kv.values())) == len(kv)
    assert all(k < (s.vocab_size - 1) // 2 <= v < s.vocab_size - 1 for k, v in kv.items())
    for seed, training in [(0, True), (5, False)]:
        split = generate_mad(s, 20, seed=seed, training=training)
        x, y = split.inputs.numpy(), split.labels.numpy()
        assert (x[:, 1::2] == s.vocab_size - 1).all() and (y[:, 0::2] == -100).all()
        assert all(kv[int(k)] == int(v) for k, v in zip(x[:, 0::2].ravel(), y[:, 1::2].ravel()))


def test_train_and_test_streams_differ():
    s = MADSetting(MADTask.IN_CONTEXT_RECALL, vocab_size=16, seq_len=32, num_train_examples=8)
    a = generate_mad(s, 8, seed=0, training=True)
    b = generate_mad(s, 8, seed=0, training=False)
    assert not torch.equal(a.inputs, b.inputs)
    assert torch.equal(a.inputs, generate_mad(s, 8, seed=0, training=True).inputs)


def test_macro_accuracy_by_hand():
    labels = torch.tensor([0, 0, 0, 1, 2, -100])
    preds = torch.tensor([0, 0, 1, 1, 3, 2])
    # class 0: 2/3, class 1: 1/1, class 2: 0/1, class 3: predicted only -> counted as 0
    assert macro_accuracy(preds, labels, num_classes=5) == pytest.approx((2 / 3 + 1 + 0 + 0) / 4)


def test_macro_accuracy_matches_torchmetrics():
    torchmetrics = pytest.importorskip("torchmetrics")
    gen = torch.Generator().manual_seed(0)
    for classes in (4, 16, 64):
        labels = torch.randint(0, classes, (500,), generator=gen)
        labels[torch.rand(500, generator=gen) < 0.3] = -100
        preds = torch.where(torch.rand(500, generator=gen) < 0.6, labels.clamp(min=0),
                            torch.randint(0, classes, (500,), generator=gen))
        metric = torchmetrics.classification.MulticlassAccuracy(
            num_classes=classes, average="macro", ignore_index=-100)
        expected = float(metric(preds, labels))
        assert macro_accuracy(preds, labels, classes) == pytest.approx(expected, abs=1e-6)
