"""linarch.models: a causal LM (transformers PreTrainedModel) around any compiled mixer.

Importing this package registers the "linarch" model type with AutoConfig and
AutoModelForCausalLM.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .autoencoder import MixerAutoEncoder
from .blocks import MixerBlock, RMSNorm, SwiGLU
from .cache import LinarchCache, MixerStateLayer
from .configuration import LinarchConfig, mlp_width
from .modeling import (
    LinarchCausalLMOutput,
    LinarchForCausalLM,
    LinarchModel,
    LinarchModelOutput,
    LinarchPreTrainedModel,
)
from .resolver import (
    compile_source,
    resolve_layer_class,
    set_layer_resolver,
    use_layer_resolver,
)

AutoConfig.register("linarch", LinarchConfig, exist_ok=True)
AutoModel.register(LinarchConfig, LinarchModel, exist_ok=True)
AutoModelForCausalLM.register(LinarchConfig, LinarchForCausalLM, exist_ok=True)

__all__ = [
    "LinarchCache",
    "LinarchCausalLMOutput",
    "LinarchConfig",
    "LinarchForCausalLM",
    "LinarchModel",
    "LinarchModelOutput",
    "LinarchPreTrainedModel",
    "MixerAutoEncoder",
    "MixerBlock",
    "MixerStateLayer",
    "RMSNorm",
    "SwiGLU",
    "compile_source",
    "mlp_width",
    "resolve_layer_class",
    "set_layer_resolver",
    "use_layer_resolver",
]
