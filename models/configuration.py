"""The configuration of a linarch causal LM.

The config carries the mixer's DSL source text and its hyper-parameters, not a class: a checkpoint
therefore rebuilds its sequence mixer by compiling the stored source again (through
`linarch.models.resolver`), so a saved model needs nothing but linarch to load.
"""

from __future__ import annotations

import enum
from dataclasses import field

from transformers import PretrainedConfig


class BlockKind(enum.Enum):
    """What one block of the stack mixes with: the mixer under study, or Zoology's BaseConv."""

    MIXER = "mixer"
    BASE_CONV = "base_conv"


class LinarchConfig(PretrainedConfig):
    """Embedding, `num_hidden_layers` blocks of [RMSNorm, mixer, RMSNorm, SwiGLU], RMSNorm, head.

    `mixer_source` is the mixer's DSL text; `mixer_kwargs` holds the hyper-parameters given to
    the compiled layer besides `hidden_size` and `num_heads` (JSON values only). `use_mlp=False`
    drops the SwiGLU half of each block (the MQAR setting of Zoology). `intermediate_size=None`
    picks the usual 8/3 expansion rounded up to a multiple of 32. `block_kinds` names each
    block's `BlockKind` value ("mixer" or "base_conv"); empty means every block is the mixer.
    Zoology's MQAR models are ["base_conv", "mixer"]: a gated short convolution below the mixer.
    """

    model_type = "linarch"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]

    vocab_size: int = 256
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_heads: int = 4
    mixer_source: str = ""
    mixer_name: str = ""
    mixer_kwargs: dict = field(default_factory=dict)
    block_kinds: list = field(default_factory=list)
    base_conv_kernel: int = 3
    use_mlp: bool = True
    intermediate_size: int | None = None
    norm_eps: float = 1e-5
    initializer_range: float = 0.02
    zero_init_out_proj: bool = False
    tie_word_embeddings: bool = True
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self, **kwargs):
        if self.intermediate_size is None:
            self.intermediate_size = mlp_width(self.hidden_size)
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}"
            )
        self.mixer_kwargs = dict(self.mixer_kwargs or {})
        known = [k.value for k in BlockKind]
        unknown = [k for k in (self.block_kinds or []) if k not in known]
        if unknown:
            raise ValueError(f"block_kinds {unknown} unknown; each block is one of {known}")
        self.block_kinds = list(self.block_kinds or [])
        if self.block_kinds and len(self.block_kinds) != self.num_hidden_layers:
            raise ValueError(f"block_kinds names {len(self.block_kinds)} blocks but "
                             f"num_hidden_layers={self.num_hidden_layers}")
        super().__post_init__(**kwargs)


def block_kinds_of(config: LinarchConfig) -> list[BlockKind]:
    """The kind of each block (every block the mixer unless `block_kinds` says otherwise)."""
    if not config.block_kinds:
        return [BlockKind.MIXER] * config.num_hidden_layers
    return [BlockKind(k) for k in config.block_kinds]


def mlp_width(hidden_size: int, multiple: int = 32) -> int:
    """SwiGLU width with about as many parameters as a 4x GELU MLP: 8/3 d, rounded up."""
    raw = (8 * hidden_size + 2) // 3
    return multiple * ((raw + multiple - 1) // multiple)
