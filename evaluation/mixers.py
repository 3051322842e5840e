"""The one seam between evaluation and the compiler: a mixer as evaluation sees it.

Everything in linarch.evaluation takes a `MixerSpec`. `mixer_from_dsl` builds one with the public
compiler API (`linarch.build`, one compile result); `load_mixer` goes through a replaceable
loader so that tests and tools with hand-written layers can stand in for the compiler.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from torch import nn


@dataclass(frozen=True)
class MixerSpec:
    """A compiled mixer and the static facts the analysis gives at its declared defaults.

    `source` is the DSL text (what a checkpoint stores to rebuild the layer); `structural_hash`
    identifies the program up to formatting, `code_hash` the generated code. `init_salt` != 0
    draws another initialisation for the same seed (data and batch order unchanged): the same
    mixer as a different arm, which is what an A/A test compares.
    """

    name: str
    source: str
    layer_cls: type[nn.Module]
    flops_per_token: int
    state_bytes: int
    structural_hash: str
    code_hash: str
    init_salt: int = 0


MixerLoader = Callable[[str | Path], MixerSpec]


def read_source(path_or_source: str | Path) -> str:
    """The DSL text: the file's contents when given an existing path, else the text itself."""
    text = str(path_or_source)
    if "\n" not in text and len(text) < 4096:
        path = Path(text)
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return text


def compiled_code(layer_cls: type[nn.Module]) -> str:
    """The text of the module that defines `layer_cls`: the generated code of a compiled layer
    (which carries it), else the source of a hand-written one, or '' if unknown."""
    generated = getattr(layer_cls, "__linarch_source__", None)
    if generated is not None:
        return generated
    module = sys.modules.get(layer_cls.__module__)
    for obj in (module, layer_cls):
        if obj is None:
            continue
        try:
            return inspect.getsource(obj)
        except (OSError, TypeError):
            continue
    return ""


def mixer_from_dsl(path_or_source: str | Path) -> MixerSpec:
    """Compile a .lin file (or DSL text) into a MixerSpec: one compile result (linarch.build)
    gives the layer, the analysis and the code hash. The target is linarch.default_target():
    the fused Triton kernels where a CUDA device is present, the torch form otherwise."""
    import linarch

    source = read_source(path_or_source)
    compiled = linarch.build(source, target=linarch.default_target())
    analysis = compiled.analysis
    return MixerSpec(
        name=analysis.name,
        source=source,
        layer_cls=compiled.layer,
        flops_per_token=int(analysis.flops_per_token),
        state_bytes=int(analysis.state_bytes),
        structural_hash=str(analysis.structural_hash),
        code_hash=compiled.code_hash,
    )


_loader: MixerLoader = mixer_from_dsl


def load_mixer(path_or_source: str | Path) -> MixerSpec:
    """A MixerSpec through the installed loader (the compiler unless replaced)."""
    return _loader(path_or_source)


def loader_is_default() -> bool:
    """True while mixers come from the compiler (what a spawned worker process also uses)."""
    return _loader is mixer_from_dsl


def set_mixer_loader(loader: MixerLoader | None) -> MixerLoader:
    """Install `loader` (None restores `mixer_from_dsl`) and return the previous one."""
    global _loader
    previous = _loader
    _loader = loader or mixer_from_dsl
    return previous


@contextmanager
def use_mixer_loader(loader: MixerLoader) -> Iterator[None]:
    """Use `loader` inside the `with` block only."""
    previous = set_mixer_loader(loader)
    try:
        yield
    finally:
        set_mixer_loader(previous)
