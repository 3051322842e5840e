"""What "check ok" promises, as one executable check: ``probe(text)`` compiles an accepted
program and runs it.

For a program that ``linarch check`` accepts (no error), the compiled layer (at the program's
defaults, parameters moved off their initial values, fp64) must

- compute the same outputs, final states and input gradients in its chunked form as in its
  token-by-token recurrent form (relative 1e-9), over several chunks with a padded last one;
- decode token by token to what one forward computes;
- be causal: moving the input at t0 leaves every earlier output bit-for-bit unchanged and gives
  those outputs no gradient from tokens >= t0;
- stay finite, and, when the stability pass proved every transition non-expanding, keep its
  state bounded over a longer sequence.

A failure raises ``ProbeFailure`` naming the property; a program with errors gives its
diagnostics. Sizes stay small: this runs on every corpus program in CI.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import linarch
from linarch.dsl.diagnostics import Diagnostic
from linarch.dsl.source import Source
from linarch_testing.torch_cases import new_cache, randomise, rel_err, run

TOL = 1e-9
STABILITY_CODES = frozenset({"LA501", "LA502", "LA503", "LA504"})


class ProbeFailure(AssertionError):
    """An accepted program that does not keep check's promise."""


@dataclass(frozen=True)
class Outcome:
    """What happened to a program: its diagnostics, and for an accepted one, what ran."""

    diagnostics: tuple[Diagnostic, ...]
    ran: bool = False
    chunked: tuple[bool, ...] = ()  # per state: a chunk form (True) or the scan

    @property
    def errors(self) -> list[tuple[str, int]]:
        return [(d.code, d.line) for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[str]:
        return [d.code for d in self.diagnostics if not d.is_error]


def probe(text: str, name: str = "probe.lin", *, length: int = 21, chunk_size: int = 8,
          stable_length: int = 160, kwargs: dict | None = None) -> Outcome:
    """Check ``text``; if accepted, build its layer (at its defaults, or with ``kwargs``: those
    the program does not read are dropped, since a mutation may have removed their use) and
    hold it to check's promises (see the module docstring)."""
    source = Source(text, name)
    diagnostics = tuple(linarch.check(source, chunk_size=chunk_size))
    if any(d.is_error for d in diagnostics):
        return Outcome(diagnostics)
    compiled = linarch.build(source, chunk_size=chunk_size)
    torch.manual_seed(0)
    hyper = compiled.layer.HYPER_PARAMETERS
    kwargs = {k: v for k, v in (kwargs or {}).items() if k in hyper and hyper[k].used}
    try:
        layer = compiled.layer(layer_idx=0, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the promise is that it builds
        raise ProbeFailure(f"the layer does not build at its defaults: {exc!r}") from exc
    layer = randomise(layer, seed=0, scale=0.2).double()
    hidden = int(kwargs.get("hidden_size", compiled.hparams["hidden_size"]))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, length, hidden, generator=gen, dtype=torch.float64)
    _agree(layer, x)
    _decode(layer, x[:, :9])
    _causal(layer, x, t0=length // 2 + 1)
    warned = {d.code for d in diagnostics} & STABILITY_CODES
    if not warned and compiled.result.unit.transitions:
        _bounded(layer, hidden, stable_length)
    chunked = tuple(not hasattr(sp, "reason") for sp in compiled.plan.states)
    return Outcome(diagnostics, True, chunked)


def _forward(layer, x, mode, cache=None):
    try:
        return run(layer, x, mode, cache=cache)
    except Exception as exc:  # noqa: BLE001 - any crash of an accepted program is the bug
        raise ProbeFailure(f"the {mode} form raises {exc!r}") from exc


def _agree(layer, x) -> None:
    results = {}
    for mode in ("chunk", "recurrent"):
        cache = new_cache()
        xm = x.clone().requires_grad_()
        out = _forward(layer, xm, mode, cache)
        if not torch.isfinite(out).all():
            raise ProbeFailure(f"the {mode} form gives non-finite outputs")
        (grad,) = torch.autograd.grad((out * out.detach().sign()).sum(), xm)
        results[mode] = (out.detach(), cache.get_layer_state(0), grad)
    (out_c, st_c, g_c), (out_r, st_r, g_r) = results["chunk"], results["recurrent"]
    gap = rel_err(out_c, out_r)
    if not gap < TOL:
        raise ProbeFailure(f"chunked and recurrent outputs differ by {gap:.2e} (relative)")
    for key in st_r:
        if st_r[key].is_floating_point() and not rel_err(st_c[key].double(),
                                                          st_r[key].double()) < TOL:
            raise ProbeFailure(f"chunked and recurrent final states `{key}` differ")
    if not rel_err(g_c, g_r) < TOL:
        raise ProbeFailure("chunked and recurrent input gradients differ")


def _decode(layer, x) -> None:
    with torch.no_grad():
        full = _forward(layer, x, "chunk")
        cache = new_cache()
        steps = [_forward(layer, x[:, :4], "chunk", cache)]
        for t in range(4, x.shape[1]):
            steps.append(_forward(layer, x[:, t:t + 1], "chunk", cache))
    gap = rel_err(torch.cat(steps, 1), full)
    if not gap < TOL:
        raise ProbeFailure(f"decoding token by token differs from one forward by {gap:.2e}")


def _causal(layer, x, t0: int) -> None:
    moved = x.clone()
    moved[:, t0] += 1.0
    for mode in ("chunk", "recurrent"):
        before, after = _forward(layer, x, mode), _forward(layer, moved, mode)
        if not torch.equal(before[:, :t0], after[:, :t0]):
            raise ProbeFailure(f"the {mode} form reads the future: outputs before t0 moved")
        xg = x.clone().requires_grad_()
        out = _forward(layer, xg, mode)
        (grad,) = torch.autograd.grad(out[:, :t0].sum(), xg)
        if torch.count_nonzero(grad[:, t0:]):
            raise ProbeFailure(f"the {mode} form reads the future: gradient from tokens >= t0")


def _bounded(layer, hidden: int, length: int) -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, length, hidden, generator=gen, dtype=torch.float64)
    cache = new_cache()
    with torch.no_grad():
        out = _forward(layer, x, "chunk", cache)
    states = [v for k, v in cache.get_layer_state(0).items() if v.is_floating_point()]
    size = max([float(s.abs().max()) for s in states] + [float(out.abs().max())])
    if not size < 1e6 * length:
        raise ProbeFailure(f"proven stable, but the state reaches {size:.3g} in {length} tokens")
