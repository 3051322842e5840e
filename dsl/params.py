"""Parameter constructors: what a declaration like ``q_proj : linear(d -> H * dk)`` owns.

Each kind states its positional arguments, its keywords with defaults, and the weights it
creates (names and shapes as formulas) — the same names fla gives its submodules, so that a
compiled layer loads an fla ``state_dict`` with ``strict=True``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParamKind:
    name: str
    chain: bool  # positional arguments are widths written a -> b (-> c ...)
    min_args: int
    max_args: int
    keywords: tuple[tuple[str, object], ...]  # (keyword, default)
    doc: str
    applies: bool = True  # False: a raw weight used as a value, not called

    def default(self, key: str) -> object:
        return dict(self.keywords)[key]


INITS = ("zeros", "ones", "normal", "uniform", "identity", "a_log", "dt_bias", "constant", "ramp")
# "ramp": channel n of N starts at value + (end - value) * (n / N) ** power, a spread of
# timescales or mixes across channels (RWKV's token-shift mixes and decay speeds start so).
# A convolution keeps PyTorch's own init or starts as the identity (a Dirac filter); the
# other inits are a raw weight's, and a conv that named one would silently ignore it.
CONV_INITS = ("default", "identity")
# A linear's bias starts at zero (the backbone's init), or at a constant: fla's layers set such
# biases after construction (a forget gate's bias at 1, a decay's at -2.9), and without this a
# program has to keep them as separate weights beside a bias-free linear.
BIAS_INITS = ("default", "zeros", "constant", "ramp")

PARAM_KINDS: dict[str, ParamKind] = {
    k.name: k
    for k in (
        ParamKind("linear", True, 2, 2,
                  (("bias", False), ("bias_init", "default"), ("bias_value", 0.0),
                   ("bias_end", 0.0), ("bias_power", 1.0)),
                  "y = x W^T (+ b): weight [out, in]; the bias starts at zero, at bias_value "
                  "with bias_init = \"constant\", or from bias_value to bias_end across the "
                  "channels with bias_init = \"ramp\""),
        ParamKind("mlp", True, 3, 6, (("act", "silu"), ("bias", True)),
                  "Linear -> act -> Linear ... (weights .0, .2, ...): hidden widths in the chain"),
        ParamKind("causal_conv", False, 1, 1,
                  (("width", 4), ("bias", False), ("padding", "causal"), ("init", "default")),
                  "depthwise convolution over time, left-padded: window of `width` tokens"),
        ParamKind("rmsnorm", False, 1, 1, (("eps", 1e-5), ("affine", True)),
                  "RMS norm over the last axis"),
        ParamKind("layernorm", False, 1, 1, (("eps", 1e-5), ("affine", True), ("bias", True)),
                  "layer norm over the last axis"),
        ParamKind("groupnorm", False, 2, 2, (("eps", 1e-5), ("affine", True), ("bias", False)),
                  "groupnorm(groups, channels): norm per group over heads x features"),
        ParamKind("weight", False, 1, 4,
                  (("init", "zeros"), ("value", 0.0), ("end", 0.0), ("power", 1.0)),
                  "a raw tensor used as a static value, e.g. A_log : weight(H, init = \"a_log\"); "
                  "leading 1s are storage only: weight(1, 1, d) is used as [d]; init = \"ramp\" "
                  "goes from value to end across the channels, as (n / N) ** power",
                  applies=False),
    )
}

ACTIVATIONS = ("silu", "swish", "tanh", "relu", "gelu", "sigmoid", "none")
PADDINGS = ("causal", "same", "center", "right", "valid")
