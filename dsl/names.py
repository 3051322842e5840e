"""Names a program may not take, because the generated layer gives them another meaning.

A mixer's name becomes a Python class, its hyper-parameters constructor keywords and
attributes of the layer, its parameters attributes (``self.q_proj``); a name that is a Python
keyword, a Python builtin the generated code calls, a name of the generated module (``torch``,
``math``, the runtime helpers), an argument of the constructor or ``forward``, or an attribute of
``torch.nn.Module`` (``training``, ``eval``, ``to``) would break or silently shadow that code.
``check`` refuses them (LA115); bindings inside the body are renamed by the code generator
instead, since they are not part of the layer's interface. The nn.Module list is checked
against torch by the test suite (the front end does not import torch).
"""

from __future__ import annotations

import builtins
import keyword

PYTHON_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) - {"_"}
PYTHON_BUILTINS = frozenset(n for n in dir(builtins) if not n.startswith("_"))

# what a generated file defines or imports at module level
GENERATED_MODULE = frozenset({
    "torch", "nn", "F", "math", "triton", "tl", "os",
    # runtime helpers (codegen/runtime.py)
    "l2norm", "eye_add", "entropy", "RMSNorm", "causal_conv", "token_shift", "rotary",
    "init_a_log", "init_dt_bias", "init_dirac", "init_ramp", "chunk_dplr", "interleave",
    "GroupNorm", "softmax_attention", "cat_last", "causal_long_conv", "lay_out", "unlay",
})

# the constructor's and forward's own arguments, and what the layer sets on itself
LAYER_INTERFACE = frozenset({
    "self", "layer_idx", "mode", "chunk_size", "kwargs", "hidden_states", "attention_mask",
    "past_key_values", "use_cache", "aux_loss", "STATES", "reset_parameters",
})

# attributes and methods of torch.nn.Module (tests/test_lang_names.py compares with torch)
MODULE_ATTRIBUTES = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init",
    "children", "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr",
    "float", "forward", "get_buffer", "get_extra_state", "get_parameter", "get_submodule",
    "half", "ipu", "load_state_dict", "modules", "mtia", "named_buffers", "named_children",
    "named_modules", "named_parameters", "parameters", "register_backward_hook",
    "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook",
    "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_module", "register_parameter", "register_state_dict_post_hook",
    "register_state_dict_pre_hook", "requires_grad_", "set_extra_state", "set_submodule",
    "share_memory", "state_dict", "to", "to_empty", "train", "type", "xpu", "zero_grad",
    "training",
})

INTERFACE_RESERVED = (PYTHON_KEYWORDS | PYTHON_BUILTINS | GENERATED_MODULE | LAYER_INTERFACE
                      | MODULE_ATTRIBUTES)


def interface_problem(name: str) -> str | None:
    """Why ``name`` cannot name a mixer, hyper-parameter or parameter (None if it can)."""
    head = name.split(".")[0]
    if head.startswith("_"):
        return "names starting with `_` are reserved for the generated code"
    if head in PYTHON_KEYWORDS:
        return "it is a Python keyword"
    if head in PYTHON_BUILTINS:
        return "it is a Python builtin the generated layer relies on"
    if head in GENERATED_MODULE:
        return "the generated module defines it"
    if head in LAYER_INTERFACE:
        return "it is an argument or attribute of the generated layer"
    if head in MODULE_ATTRIBUTES:
        return "it is an attribute of torch.nn.Module"
    return None
