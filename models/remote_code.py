"""Make a saved checkpoint loadable by a process that never imported linarch.

A fresh `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)` (lm-eval's hf
backend run from its own CLI, for instance) does not know the "linarch" model type. The config's
`auto_map` points transformers at two one-line modules written next to the weights, which
re-export the installed linarch classes: no model code is copied into the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

AUTO_MAP = {
    "AutoConfig": "configuration_linarch.LinarchConfig",
    "AutoModel": "modeling_linarch.LinarchModel",
    "AutoModelForCausalLM": "modeling_linarch.LinarchForCausalLM",
}

SHIMS = {
    "configuration_linarch.py": (
        '"""Re-exports the installed linarch config class (written by linarch.models)."""\n'
        "from linarch.models.configuration import LinarchConfig\n\n"
        '__all__ = ["LinarchConfig"]\n'
    ),
    "modeling_linarch.py": (
        '"""Re-exports the installed linarch model classes (written by linarch.models)."""\n'
        "from linarch.models.modeling import LinarchForCausalLM, LinarchModel\n\n"
        '__all__ = ["LinarchForCausalLM", "LinarchModel"]\n'
    ),
}


def write_remote_code_shims(directory: str | Path) -> None:
    """Write the re-export modules that the config's auto_map names."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    for name, text in SHIMS.items():
        (root / name).write_text(text, encoding="utf-8")
