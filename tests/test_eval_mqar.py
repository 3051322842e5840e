"""MQAR against Zoology's definition: layout, vocabularies, labels, and the power-law gaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from linarch.evaluation.mqar import (
    MQARSetting,
    distinct_rows,
    generate_mqar,
    power_law_gaps,
    query_accuracy,
)


@pytest.mark.parametrize("vocab,seq,pairs", [(8192, 64, 4), (8192, 128, 8), (512, 256, 16),
                                             (100, 40, 10)])
def test_layout_matches_zoology(vocab, seq, pairs):
    setting = MQARSetting(vocab_size=vocab, seq_len=seq, num_kv_pairs=pairs,
                          random_non_queries=False)
    split = generate_mqar(setting, 300, seed=7, stream="train")
    x, y = split.inputs.numpy(), split.labels.numpy()
    assert x.shape == y.shape == (300, seq)
    keys, values = x[:, 0: 2 * pairs: 2], x[:, 1: 2 * pairs: 2]
    assert ((keys >= 1) & (keys < vocab // 2)).all()
    assert ((values >= vocab // 2) & (values < vocab)).all()
    for row in range(300):
        assert len(set(keys[row])) == pairs and len(set(values[row])) == pairs
        labelled = np.nonzero(y[row] != -100)[0]
        assert len(labelled) == pairs
        assert ((labelled - 2 * pairs) % 2 == 0).all() and (labelled >= 2 * pairs).all()
        kv = dict(zip(keys[row], values[row]))
        # each key queried once, labelled with its value, and nothing else after the context
        assert sorted(x[row, labelled]) == sorted(keys[row])
        assert all(kv[x[row, p]] == y[row, p] for p in labelled)
        rest = np.setdiff1d(np.arange(2 * pairs, seq), labelled)
        assert (x[row, rest] == 0).all()
    assert (y[:, : 2 * pairs] == -100).all()


def test_random_non_queries_fill_only_the_empty_slots():
    setting = MQARSetting(vocab_size=1024, seq_len=64, num_kv_pairs=4)
    plain = generate_mqar(MQARSetting(vocab_size=1024, seq_len=64, num_kv_pairs=4,
                                      random_non_queries=False), 500, seed=3, stream="s")
    filled = generate_mqar(setting, 500, seed=3, stream="s")
    same = plain.inputs != 0
    assert torch.equal(filled.inputs[same], plain.inputs[same])
    assert torch.equal(filled.labels, plain.labels)
    noise = filled.inputs[~same].float()
    # uniform over [0, vocab): mean about (vocab - 1) / 2
    assert abs(noise.mean().item() - 511.5) < 10 and noise.max() < 1024


def test_gap_distribution_is_numpy_weighted_choice_without_replacement():
    """The oracle is the call Zoology makes: choice(space, k, replace=False, p=p)."""
    space, k, a, n = 28, 4, 0.01, 20000
    p = a * np.arange(1, space + 1) ** (a - 1)
    p = p / p.sum()
    oracle_rng = np.random.default_rng(0)
    oracle = np.stack([oracle_rng.choice(space, size=k, replace=False, p=p) for _ in range(n)])
    mine = power_law_gaps(np.random.default_rng(1), space, n, k, a)
    for column in range(k):  # the law of the j-th draw, not only of the set
        ours = np.bincount(mine[:, column], minlength=space) / n
        theirs = np.bincount(oracle[:, column], minlength=space) / n
        assert 0.5 * np.abs(ours - theirs).sum() < 0.03
    assert all(len(set(r)) == k for r in mine[:200])


def test_distinct_rows_is_uniform_over_distinct_tuples():
    rng = np.random.default_rng(0)
    for low, high, k in [(1, 4096, 4), (1, 10, 6)]:
        rows = distinct_rows(rng, low, high, 4000, k)
        assert rows.min() >= low and rows.max() < high
        assert all(len(set(r)) == k for r in rows)
        counts = np.bincount(rows[:, 0] - low, minlength=high - low)
        if high - low <= 16:
            expected = 4000 / (high - low)
            assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)


def test_splits_and_seeds_are_independent_and_reproducible():
    setting = MQARSetting(vocab_size=512, seq_len=32, num_kv_pairs=4)
    a = generate_mqar(setting, 50, seed=1, stream="train")
    assert torch.equal(a.inputs, generate_mqar(setting, 50, seed=1, stream="train").inputs)
    assert not torch.equal(a.inputs, generate_mqar(setting, 50, seed=1, stream="test").inputs)
    assert not torch.equal(a.inputs, generate_mqar(setting, 50, seed=2, stream="train").inputs)


def test_settings_are_checked_like_zoology():
    with pytest.raises(ValueError):
        MQARSetting(seq_len=63)
    with pytest.raises(ValueError):
        MQARSetting(vocab_size=64, seq_len=64)
    with pytest.raises(ValueError):
        MQARSetting(seq_len=64, num_kv_pairs=17)


def test_query_accuracy_counts_only_labelled_positions():
    labels = torch.tensor([[-100, 5, -100, 7], [-100, -100, 1, 2]])
    preds = torch.tensor([[5, 5, 0, 0], [0, 0, 1, 2]])
    assert query_accuracy(preds, labels) == 0.75


def test_a_training_mixture_splits_the_examples_evenly_over_its_pair_counts():
    """Zoology trains on several pair counts at once; a mixture's examples are each setting's
    own generator's, interleaved so any prefix (a shorter run's steps) holds every setting."""
    from linarch.evaluation.problems import ModelShape, MQARProblem

    shape = ModelShape(32, 2, 2)
    settings = [MQARSetting(256, 64, pairs) for pairs in (4, 8, 12, 16)]
    problem = MQARProblem(settings[0], shape, num_train=40, num_test=4, mix=tuple(settings[1:]))
    train = problem.make_data(seed=3).train
    assert problem.name == "mqar-T64-kv4+8+12+16-V256"
    labelled = (train.labels != -100).sum(dim=1).tolist()
    assert labelled == [4, 8, 12, 16] * 10
    own = generate_mqar(settings[2], 10, 3, "train-T64-kv12")
    assert torch.equal(train.inputs[2::4], own.inputs)
    assert torch.equal(train.labels[2::4], own.labels)
    # Without a mixture nothing changes: the same data, and the same definition (budget key).
    plain = MQARProblem(settings[0], shape, num_train=40, num_test=4)
    assert "mix" not in plain.definition() and "mix" in problem.definition()
    assert torch.equal(plain.make_data(3).train.inputs, generate_mqar(settings[0], 40, 3,
                                                                      "train").inputs)
    with pytest.raises(ValueError, match="share one sequence length"):
        MQARProblem(settings[0], shape, 40, 4, mix=(MQARSetting(256, 128, 8),))
    with pytest.raises(ValueError, match="do not split evenly over 4"):
        MQARProblem(settings[0], shape, 42, 4, mix=tuple(settings[1:]))
