"""Run fla layers and ops for real, on CPU, under the Triton interpreter, in a subprocess.

TRITON_INTERPRET=1 has to be set before triton is imported, so the work happens in a fresh
Python process (this file run as a script). Two more things make fla run there: the autotuner
benchmarks through a GPU driver, so `Autotuner.prune_configs` is limited to the first config;
and only fp32 is used (bf16 is wrong in the interpreter). The parent sends a list of jobs in a
torch.save file and gets the results back the same way:

    LayerJob: build `cls(**kwargs)`, load `state_dict` (strict), eval(), no_grad forward with a
              fresh fla Cache and use_cache=True -> (output, recurrent_state as fla stores it)
    OpJob:    call `fn(**kwargs)` (an fla op given by dotted path) -> its output tuple
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass(frozen=True)
class LayerJob:
    cls: str  # dotted path, e.g. "fla.layers.DeltaNet"
    kwargs: dict
    state_dict: dict
    hidden_states: torch.Tensor


@dataclass(frozen=True)
class OpJob:
    fn: str  # dotted path, e.g. "fla.ops.delta_rule.fused_recurrent_delta_rule"
    kwargs: dict = field(default_factory=dict)


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _run_layer(job: LayerJob):
    from fla.models.utils import Cache

    layer = _resolve(job.cls)(**job.kwargs)
    layer.load_state_dict(job.state_dict, strict=True)
    layer.eval()
    cache = Cache()
    with torch.no_grad():
        out = layer(job.hidden_states, past_key_values=cache, use_cache=True)
    state = cache[layer.layer_idx]["recurrent_state"] if len(cache) else None
    return out[0], state


def _run_op(job: OpJob):
    with torch.no_grad():
        return _resolve(job.fn)(**job.kwargs)


def _child(payload: Path, result: Path) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import triton.runtime.autotuner as autotuner

    prune = autotuner.Autotuner.prune_configs
    autotuner.Autotuner.prune_configs = lambda self, kwargs: prune(self, kwargs)[:1]
    torch.set_num_threads(1)
    results = []
    for job in torch.load(payload, weights_only=False):
        try:
            results.append(_run_layer(job) if isinstance(job, LayerJob) else _run_op(job))
        except Exception as error:  # reported back to the test, which fails on it
            results.append(RuntimeError(f"{type(error).__name__}: {error}"))
    torch.save(results, result)


def run_interpreted(jobs: list[LayerJob | OpJob], timeout: float = 300.0) -> list:
    """Run the jobs in a TRITON_INTERPRET=1 subprocess; one result (or RuntimeError) per job."""
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    tests_dir = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests_dir, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        payload, result = Path(tmp, "jobs.pt"), Path(tmp, "results.pt")
        torch.save(jobs, payload)
        proc = subprocess.run(
            [sys.executable, "-m", "linarch_testing.oracles.interpret", str(payload), str(result)],
            env=env, capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"interpreter subprocess failed:\n{proc.stderr[-4000:]}")
        return torch.load(result, weights_only=False)


if __name__ == "__main__":
    from linarch_testing.oracles.interpret import (
        _child as child,  # the jobs were pickled against this module
    )

    child(Path(sys.argv[1]), Path(sys.argv[2]))
