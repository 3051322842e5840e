"""Before the cascade, in a worker: where a candidate will be trained, and what it computes.

`vet` builds the candidate once, in a sandboxed worker (it runs generated code), and returns:

- the shape the evaluation will train it at (width matched to the baseline's parameter count) and
  its FLOPs per token and state bytes at that shape: the archive's descriptors, so a program
  whose declared defaults are large does not land in another cell than it is trained in;
- a behavioural fingerprint: the layer's outputs on fixed inputs at one probe width, with every
  parameter drawn from a generic distribution seeded by its name and shape (the program's own
  initialisers are ignored: an identity-initialised FIR path would otherwise look like no
  path). Two programs that compute the same function for all weights (a rewrite) give the same
  fingerprint; two different ideas almost never do. It is a fixed random projection of the
  outputs (64 numbers), small enough for the journal;
- task facts for the researcher's task card (taskfacts.describe).
"""

from __future__ import annotations

import dataclasses
import math
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from linarch.search import wire
from linarch.search.records import hparam_value

PROBE_HIDDEN = 32
PROBE_HEADS = 2
PROBE_TOKENS = 16
PROBE_BATCH = 2
FINGERPRINT_SIZE = 64


@dataclass(frozen=True)
class VetJob:
    candidate_id: str
    source: str
    preset: str
    stages: tuple[str, ...]
    run_path: str = ""


@wire.register
@dataclass(frozen=True)
class VetResult:
    shape: tuple[tuple[str, int | float], ...]  # hyper-parameters at which the costs were taken
    flops_per_token: int
    state_bytes: int
    fingerprint: tuple[float, ...]  # empty: the outputs were not finite at the probe
    facts: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""  # why a part is missing (no trained stage, non-finite outputs ...)

    def to_dict(self) -> dict[str, Any]:
        return {"shape": [list(p) for p in self.shape], "flops_per_token": self.flops_per_token,
                "state_bytes": self.state_bytes, "fingerprint": list(self.fingerprint),
                "facts": dict(self.facts), "note": self.note}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VetResult:
        return cls(tuple((str(k), hparam_value(v)) for k, v in data.get("shape", ())),
                   int(data["flops_per_token"]), int(data["state_bytes"]),
                   tuple(float(v) for v in data.get("fingerprint", ())),
                   dict(data.get("facts", {})), str(data.get("note", "")))


def vet(job: VetJob) -> VetResult:
    import torch

    from linarch.api import analyze
    from linarch.search.rundir import baseline_source
    from linarch.search.taskfacts import describe, first_trained_stage, trained_shape

    torch.set_num_threads(int(os.environ.get("LINARCH_THREADS", "1")))
    notes = []
    stage = first_trained_stage(job.stages)
    baseline = baseline_source(job.run_path)
    shape: dict[str, int | float] = {}
    if stage is not None:
        shape = trained_shape(job.source, stage, job.preset, baseline)
    else:
        notes.append("no trained stage: costs at the declared defaults")
    flops, state = costs_at(job.source, shape)
    fingerprint = behaviour(job.source)
    if not fingerprint:
        notes.append("outputs not finite at the probe: no fingerprint")
    return VetResult(tuple(sorted(shape.items())), flops, state, fingerprint,
                     describe(job.stages, job.preset, analyze(baseline).name), "; ".join(notes))


def costs_at(source: str, hparams: Mapping[str, int | float]) -> tuple[int, int]:
    """FLOPs per token and state bytes with some hyper-parameters set (the others at their
    declared defaults): the compiler's cost formulas evaluated at another point."""
    import linarch

    unit = linarch.analyze(source).result.unit
    defaults = dict(unit.defaults)
    for name, value in hparams.items():
        if name in unit.symbols:
            defaults[unit.symbols[name]] = value
    at = dataclasses.replace(unit, defaults=defaults)
    return (int(at.cost.at(at, at.cost.flops_per_token)),
            int(at.cost.at(at, at.cost.state_bytes)))


def behaviour(source: str) -> tuple[float, ...]:
    """The fingerprint: a fixed projection of the outputs on fixed inputs, generic weights."""
    import inspect

    import torch

    import linarch

    layer_cls = linarch.compile(source)
    kwargs: dict[str, Any] = {"hidden_size": PROBE_HIDDEN, "num_heads": PROBE_HEADS}
    # head_dim only where the layer reads it itself: Mamba2 and RWKV-7 derive num_heads from it
    hyper = getattr(layer_cls, "HYPER_PARAMETERS", {}).get("head_dim")
    if "head_dim" in inspect.signature(layer_cls.__init__).parameters and (
            hyper is None or hyper.used):
        kwargs["head_dim"] = PROBE_HIDDEN // PROBE_HEADS
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = layer_cls(**kwargs).double()
    with torch.no_grad():
        for name, p in sorted(layer.named_parameters()):
            p.copy_(_generic(name, tuple(p.shape)))
        x = torch.randn(PROBE_BATCH, PROBE_TOKENS, PROBE_HIDDEN, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(1234))
        y = layer(x)[0].reshape(-1)
        if not bool(torch.isfinite(y).all()):
            return ()
        projection = torch.randn(FINGERPRINT_SIZE, y.numel(), dtype=torch.float64,
                                 generator=torch.Generator().manual_seed(4321))
        out = projection @ y / math.sqrt(y.numel())
    return tuple(float(v) for v in out)


def _generic(name: str, shape: tuple[int, ...]):
    import torch

    g = torch.Generator().manual_seed(zlib.crc32(f"{name}:{shape}".encode()))
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
    std = 1.0 / math.sqrt(fan_in) if len(shape) > 1 else 0.5
    return torch.randn(shape, dtype=torch.float64, generator=g) * std
