"""The decoding cache: the duck-typed state protocol and the transformers Cache operations."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import Cache

from linarch.models.cache import LinarchCache


def filled_cache() -> LinarchCache:
    cache = LinarchCache(num_layers=2)
    for layer in range(2):
        state = {"S": torch.arange(3.0)[:, None, None].expand(3, 2, 2) + 10 * layer,
                 "conv": torch.arange(3.0)[:, None].expand(3, 4).clone()}
        cache.set_layer_state(layer, state, num_new_tokens=5)
    return cache


def test_states_round_trip_and_count_tokens():
    cache = LinarchCache(num_layers=2)
    assert isinstance(cache, Cache)
    assert cache.get_layer_state(0) is None and cache.get_seq_length() == 0
    cache.set_layer_state(0, {"S": torch.ones(1, 2)}, num_new_tokens=4)
    cache.set_layer_state(0, {"S": torch.zeros(1, 2)}, num_new_tokens=1)
    assert torch.equal(cache.get_layer_state(0)["S"], torch.zeros(1, 2))
    assert cache.get_seq_length() == 5 and cache.get_seq_length(1) == 0
    assert cache.layers[0].batch_size == 1


def test_batch_operations_act_on_dimension_zero_of_every_state():
    cache = filled_cache()
    cache.reorder_cache(torch.tensor([2, 0, 1]))
    assert cache.get_layer_state(1)["S"][:, 0, 0].tolist() == [12.0, 10.0, 11.0]
    assert cache.get_layer_state(0)["conv"][:, 0].tolist() == [2.0, 0.0, 1.0]
    cache.batch_repeat_interleave(2)
    assert cache.get_layer_state(0)["conv"][:, 0].tolist() == [2.0, 2.0, 0.0, 0.0, 1.0, 1.0]
    cache.batch_select_indices(torch.tensor([1, 4]))
    assert cache.get_layer_state(0)["S"][:, 0, 0].tolist() == [2.0, 1.0]
    assert cache.batch_size == 2


def test_a_recurrent_state_cannot_be_cropped_but_can_be_reset():
    cache = filled_cache()
    cache.crop(0)
    with pytest.raises(NotImplementedError):
        cache.crop(2)
    cache.reset()
    assert cache.get_layer_state(0) is None and cache.get_seq_length() == 0
