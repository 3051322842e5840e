"""Subprocess entry of the kernel tests (no tests here): run generated kernel modules under the
Triton interpreter with `linarch` and `fla` blocked from import.

TRITON_INTERPRET=1 only works when it is set before triton is first imported (triton's own
jit-compiled standard library, tl.cdiv, tl.sigmoid, tl.cumsum..., is decorated at import), so
kernels run in a fresh process started by `run_jobs` in test_kernels_support. Blocking linarch
and fla there also proves every generated file stands alone on torch and triton.

    python tests/test_kernels_worker.py JOBS.pt RESULTS.pt

With LINARCH_KERNEL_DEVICE=cuda the jobs run compiled on the GPU: inputs go there and results
come back to the CPU, so the tests compare them exactly as they compare the interpreter's.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

BLOCKED = ("linarch", "fla")


class _Blocker(importlib.abc.MetaPathFinder):
    """Refuses every import of a BLOCKED package (and of its submodules)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"{fullname} is blocked: generated kernels must not import it")
        return None


def _load(path: str, cache: dict):
    if path not in cache:
        name = f"generated_{len(cache)}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        cache[path] = module
    return cache[path]


def _run(job: dict, cache: dict, device: str) -> dict:
    import torch

    def there(t):
        return None if t is None else t.to(device, copy=True)

    def back(t):
        return t.detach().cpu()

    module = _load(job["module_path"], cache)
    entry = getattr(module, job["entry"])
    leaves = [there(t).requires_grad_(t.is_floating_point()) for t in job["args"]]
    h0 = there(job["initial_state"])
    if h0 is not None:
        h0.requires_grad_()
    with torch.random.fork_rng():
        # torch.empty* now returns NaN-filled memory (on the GPU some torch ops merely warn)
        torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
        torch.utils.deterministic.fill_uninitialized_memory = True
        try:
            o, state = entry(*leaves, initial_state=h0, output_final_state=True,
                             cu_seqlens=there(job["cu_seqlens"]), **job.get("kwargs", {}))
            if not job.get("backward", True):
                return {"o": back(o), "state": back(state)}
            do, dstate = there(job["weights"][0]), there(job["weights"][1])
            inputs = [t for t in leaves if t.requires_grad] + ([h0] if h0 is not None else [])
            grads = torch.autograd.grad((o.double() * do).sum() + (state.double() * dstate).sum(),
                                        inputs)
        finally:
            torch.use_deterministic_algorithms(False)
    return {"o": back(o), "state": back(state), "grads": [back(g) for g in grads]}


def main(payload: str, result: str) -> None:
    sys.meta_path.insert(0, _Blocker())
    import torch

    torch.set_num_threads(1)
    device = os.environ.get("LINARCH_KERNEL_DEVICE", "cpu")
    cache: dict = {}
    results = []
    for job in torch.load(payload, weights_only=False):
        try:
            results.append(_run(job, cache, device))
        except Exception as error:  # reported to the test, which fails on it
            results.append({"error": f"{type(error).__name__}: {error}"})
    torch.save(results, result)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
