"""The decoding cache that compiled mixers read and write.

Generated layers import only torch, so they see the cache through two duck-typed methods:
`get_layer_state(layer_idx) -> dict[str, Tensor] | None` and
`set_layer_state(layer_idx, state, num_new_tokens)`. A state is whatever the layer needs to go on
(recurrent states, conv windows, a KV cache); every tensor in it has the batch as dimension 0, which
is what lets beam search reorder it. The class is a transformers `Cache`, so `generate()` carries it
from step to step.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

LayerState = dict[str, torch.Tensor]


class MixerStateLayer(CacheLayerMixin):
    """One layer's state dict and how many tokens it has absorbed."""

    supports_early_init = False
    is_compileable = False
    is_croppable = False

    def __init__(self) -> None:
        super().__init__()
        self.state: LayerState | None = None
        self.seen_tokens = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """States are created by the layer itself on its first call."""

    def update(self, key_states, value_states, *args, **kwargs):
        raise NotImplementedError(
            "a mixer state layer stores dict states: use set_layer_state, not update(k, v)"
        )

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.seen_tokens + query_length, 0

    def get_seq_length(self) -> int:
        return self.seen_tokens

    def get_max_length(self) -> int:
        return -1

    @property
    def batch_size(self) -> int:
        if not self.state:
            return -1
        return next(iter(self.state.values())).shape[0]

    def _map(self, fn) -> None:
        if self.state is not None:
            self.state = {name: fn(t) for name, t in self.state.items()}

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._map(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map(lambda t: t[indices, ...])

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove != 0:
            raise NotImplementedError("a recurrent state cannot forget tokens it has absorbed")

    def offload(self) -> None:
        self._map(lambda t: t.to("cpu", non_blocking=True))

    def prefetch(self) -> None:
        """States stay where the layer put them."""

    def reset(self) -> None:
        self.state = None
        self.seen_tokens = 0


class LinarchCache(Cache):
    """Per-layer mixer states for prompt-then-token decoding."""

    def __init__(self, num_layers: int) -> None:
        super().__init__(layers=[MixerStateLayer() for _ in range(num_layers)])

    def get_layer_state(self, layer_idx: int) -> LayerState | None:
        """The state layer `layer_idx` stored last, or None before its first call."""
        return self.layers[layer_idx].state

    def set_layer_state(self, layer_idx: int, state: LayerState, num_new_tokens: int) -> None:
        """Store layer `layer_idx`'s state after it absorbed `num_new_tokens` more tokens."""
        layer = self.layers[layer_idx]
        layer.state = dict(state)
        layer.seen_tokens += int(num_new_tokens)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        if layer_idx >= len(self.layers):
            return 0
        return self.layers[layer_idx].seen_tokens
