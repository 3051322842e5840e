"""The configuration of a linarch causal LM.

The config carries the mixer's DSL source text and its hyper-parameters, not a class: a checkpoint
therefore rebuilds its sequence mixer by compiling the stored source again (through
`linarch.models.resolver`), so a saved model needs nothing but linarch to load.
"""

from __future__ import annotations

from dataclasses import field

from transformers import PretrainedConfig


class LinarchConfig(PretrainedConfig):
    """Embedding, `num_hidden_layers` blocks of [RMSNorm, mixer, RMSNorm, SwiGLU], RMSNorm, head.

    `mixer_source` is the mixer's DSL text; `mixer_kwargs` holds the hyper-parameters given to
    the compiled layer besides `hidden_size` and `num_heads` (JSON values only). `use_mlp=False`
    drops the SwiGLU half of each block (the MQAR setting of Zoology). `intermediate_size=None`
    picks the usual 8/3 expansion rounded up to a multiple of 32.
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
        super().__post_init__(**kwargs)


def mlp_width(hidden_size: int, multiple: int = 32) -> int:
    """SwiGLU width with about as many parameters as a 4x GELU MLP: 8/3 d, rounded up."""
    raw = (8 * hidden_size + 2) // 3
    return multiple * ((raw + multiple - 1) // multiple)
