"""A causal LM around any sequence mixer that follows fla's layer contract.

`LinarchModel` is the backbone (embedding, blocks, final norm); `LinarchForCausalLM` adds the head,
the loss and `generate()`. Mixer layers are rebuilt from the DSL source stored in the config, so
`from_pretrained` works for any mixer the compiler (or the installed resolver) can build.
Importing this module registers the "linarch" model type with AutoConfig and
AutoModelForCausalLM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    GenerationMixin,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.utils import ModelOutput

from .base_conv import BaseConv
from .blocks import MixerBlock, RMSNorm, SwiGLU
from .cache import LinarchCache
from .configuration import BlockKind, LinarchConfig, block_kinds_of
from .remote_code import AUTO_MAP, write_remote_code_shims
from .resolver import resolve_layer_class

OUT_PROJECTIONS = ("o_proj", "down_proj")


@dataclass
class LinarchModelOutput(ModelOutput):
    """Backbone output. `aux_loss` is the sum of the mixers' auxiliary losses (a scalar)."""

    last_hidden_state: torch.Tensor | None = None
    cache: LinarchCache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    aux_loss: torch.Tensor | None = None


@dataclass
class LinarchCausalLMOutput(ModelOutput):
    """Causal LM output.

    `loss` is the next-token cross-entropy only; `aux_loss` is the sum of the mixers' auxiliary
    losses, which a trainer adds to `loss` (the model never adds it, so evaluation losses stay
    comparable across mixers).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: LinarchCache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    aux_loss: torch.Tensor | None = None


class LinarchPreTrainedModel(PreTrainedModel):
    """Weight initialisation shared by the backbone and the LM.

    Linear and embedding weights are drawn from N(0, initializer_range) and biases zeroed, as in
    GPT-2 and Llama; other parameters (convs, gates, decays) keep the mixer's own initialisation,
    and so does any module or weight that carries `_no_reinit = True`. With
    `zero_init_out_proj` the mixers' `o_proj` and the MLPs' `down_proj` start at zero, so every
    block starts as the identity.
    """

    config_class = LinarchConfig
    config: LinarchConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ["MixerBlock"]
    _supports_cache_class = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """transformers' loader, then the mixers' non-persistent buffers rebuilt.

        transformers builds the model on the meta device and fills it from the checkpoint; a
        buffer that is not saved (rotary frequencies, decay constants) would stay uninitialised,
        so each mixer's unsaved buffers are recomputed from a fresh layer.
        """
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        restore_unsaved_buffers(model)
        return loaded

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' saver, plus the auto_map shims that let a fresh process load it."""
        self.config.auto_map = dict(AUTO_MAP)
        super().save_pretrained(save_directory, *args, **kwargs)
        write_remote_code_shims(save_directory)

    def _init_weights(self, module: nn.Module) -> None:
        if getattr(module, "_no_reinit", False):
            return
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "_out_projection", False) and self.config.zero_init_out_proj:
                init.zeros_(module.weight)
            elif not getattr(module.weight, "_no_reinit", False):
                init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None and not getattr(module.bias, "_no_reinit", False):
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            init.ones_(module.weight)


class LinarchModel(LinarchPreTrainedModel):
    """Token embedding, `num_hidden_layers` mixer blocks, final RMSNorm.

    The mixer class is compiled from `config.mixer_source` unless `layer_cls` is given (a caller
    that already holds the compiled class).
    """

    def __init__(self, config: LinarchConfig, layer_cls: type[nn.Module] | None = None) -> None:
        super().__init__(config)
        if layer_cls is None:
            layer_cls = resolve_layer_class(config.mixer_source)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        width = config.intermediate_size if config.use_mlp else None
        self.layers = nn.ModuleList(
            MixerBlock(_sequence_layer(config, kind, layer_cls, idx), config.hidden_size, width,
                       config.norm_eps)
            for idx, kind in enumerate(block_kinds_of(config))
        )
        self.norm = RMSNorm(config.hidden_size, config.norm_eps)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in OUT_PROJECTIONS:
                module._out_projection = True  # what zero_init_out_proj zeroes
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: LinarchCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool = False,
        **kwargs,
    ) -> LinarchModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        use_cache = bool(use_cache) or cache is not None
        if use_cache and cache is None:
            cache = LinarchCache(self.config.num_hidden_layers)
        mask = _layer_mask(attention_mask, hidden.shape[1])
        all_hidden = [hidden] if output_hidden_states else None
        aux_total = hidden.new_zeros((), dtype=torch.float32)
        for block in self.layers:
            hidden, aux = block(hidden, mask, cache, use_cache)
            if aux is not None:
                aux_total = aux_total + aux.float()
            if all_hidden is not None:
                all_hidden.append(hidden)
        hidden = self.norm(hidden)
        return LinarchModelOutput(
            last_hidden_state=hidden,
            cache=cache if use_cache else None,
            hidden_states=tuple(all_hidden) if all_hidden is not None else None,
            aux_loss=aux_total,
        )


class LinarchForCausalLM(LinarchPreTrainedModel, GenerationMixin):
    """The backbone plus an LM head, tied to the embedding unless the config unties it."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: LinarchConfig, layer_cls: type[nn.Module] | None = None) -> None:
        super().__init__(config)
        self.model = LinarchModel(config, layer_cls=layer_cls)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # Mixers keep recurrent states, not per-token keys and values: the model makes its cache.
        return False

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: LinarchCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        output_hidden_states: bool = False,
        past_key_values: LinarchCache | None = None,
        **kwargs,
    ) -> LinarchCausalLMOutput:
        """Next-token logits; with `labels` (the input ids, -100 to skip) also the shifted loss.

        `logits_to_keep` keeps the last k positions (0 keeps all) or the given position indices.
        `past_key_values` is accepted as an older name of `cache`.
        """
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            cache=cache if cache is not None else past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        hidden = out.last_hidden_state
        if isinstance(logits_to_keep, int):
            kept = hidden[:, -logits_to_keep:] if logits_to_keep > 0 else hidden
        else:
            kept = hidden[:, logits_to_keep]
        logits = self.lm_head(kept)
        loss = None
        if labels is not None:
            shifted = labels[:, 1:].to(hidden.device)
            loss = self.label_loss(hidden[:, :-1], shifted)
        return LinarchCausalLMOutput(
            loss=loss,
            logits=logits,
            cache=out.cache,
            hidden_states=out.hidden_states,
            aux_loss=out.aux_loss,
        )

    def label_loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over positions whose target is not -100.

        The head runs only at those positions: for MQAR, where a handful of the T positions carry
        a label, this removes most of the cost of a large vocabulary.
        """
        keep = targets != -100
        logits = self.lm_head(hidden[keep]).float()
        return F.cross_entropy(logits, targets[keep])


@torch.no_grad()
def restore_unsaved_buffers(model: nn.Module) -> None:
    """Recompute every mixer's non-persistent buffers by constructing a fresh layer."""
    config = model.config
    for block in model.modules():
        if not isinstance(block, MixerBlock):
            continue
        mixer = block.mixer
        if isinstance(mixer, BaseConv):
            continue
        unsaved = [
            (prefix, sub, name)
            for prefix, sub in mixer.named_modules()
            for name in sub._non_persistent_buffers_set
            if sub._buffers.get(name) is not None
        ]
        if not unsaved:
            continue
        with torch.random.fork_rng(devices=[]):
            fresh = type(mixer)(
                hidden_size=config.hidden_size,
                num_heads=config.num_heads,
                layer_idx=getattr(mixer, "layer_idx", None),
                **config.mixer_kwargs,
            )
        fresh_modules = dict(fresh.named_modules())
        for prefix, sub, name in unsaved:
            current = sub._buffers[name]
            value = fresh_modules[prefix]._buffers[name]
            sub._buffers[name] = value.to(device=current.device, dtype=current.dtype)


def _sequence_layer(config: LinarchConfig, kind: BlockKind, layer_cls: type[nn.Module],
                    idx: int) -> nn.Module:
    """Block `idx`'s sequence layer: the mixer, or Zoology's BaseConv."""
    if kind is BlockKind.BASE_CONV:
        return BaseConv(config.hidden_size, layer_idx=idx, kernel_size=config.base_conv_kernel)
    return layer_cls(hidden_size=config.hidden_size, num_heads=config.num_heads, layer_idx=idx,
                     **config.mixer_kwargs)


def _layer_mask(attention_mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """The [B, T] mask of the current tokens, or None when no token is padding."""
    if attention_mask is None:
        return None
    mask = attention_mask[:, -length:]
    if bool(mask.all()):
        return None
    return mask


__all__ = [
    "LinarchCausalLMOutput",
    "LinarchForCausalLM",
    "LinarchModel",
    "LinarchModelOutput",
    "LinarchPreTrainedModel",
    "SwiGLU",
]


# Importing this module makes "linarch" a model type that transformers' Auto classes know.
AutoConfig.register("linarch", LinarchConfig, exist_ok=True)
AutoModel.register(LinarchConfig, LinarchModel, exist_ok=True)
AutoModelForCausalLM.register(LinarchConfig, LinarchForCausalLM, exist_ok=True)
