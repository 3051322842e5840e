"""The Triton target: the PyTorch target's file plus fused chunk kernels (linarch.kernels).

It is the same emitter (same constructor, same state_dict, same recurrent form) with, for every
state whose plan is a ``KernelPlan``, one more branch in front of the PyTorch chunk form: on a
GPU (or under TRITON_INTERPRET=1) that state runs through ``chunk_<mixer>_<state>``. The
kernels are rendered from the plan's ``KernelSpec`` and placed, as rendered, between the
runtime and the layer. The file header and ``STATES`` say which state runs where.
"""

from __future__ import annotations

from dataclasses import dataclass

from linarch.codegen.chunk_emit import ChunkEmitter, groups
from linarch.codegen.plan import KernelPlan, StatePlan, Target, plan
from linarch.codegen.torch_backend import Generator, TorchOptions, checked
from linarch.dsl.unit import Unit


@dataclass(frozen=True)
class TritonOptions:
    """Every knob that changes the generated file (part of the cache key)."""

    chunk_size: int = 64
    dtype: str = "bf16"  # kernel input dtype: bf16, fp16 or fp32 (states are fp32)
    autotune: bool = True  # False: one fixed config (required under TRITON_INTERPRET=1)


def generate(unit: Unit, *, chunk_size: int = 64, dtype: str = "bf16",
             autotune: bool = True) -> str:
    options = TritonOptions(chunk_size, dtype, autotune)
    return checked(TritonGenerator(unit, options).render())


class TritonGenerator(Generator):
    target = Target.TRITON

    def __init__(self, unit: Unit, options: TritonOptions) -> None:
        super().__init__(unit, TorchOptions(chunk_size=options.chunk_size),
                         plan(unit, Target.TRITON))
        self.triton = options

    def kernel_options(self):
        from linarch.kernels.spec import KernelOptions

        return KernelOptions(chunk_size=self.triton.chunk_size, dtype=self.triton.dtype,
                             autotune=self.triton.autotune)

    def branches(self, sp: StatePlan, state: str, sizes: str,
                 reads: dict[int, str]) -> list[tuple[str, list[str]]]:
        out = super().branches(sp, state, sizes, reads)
        if isinstance(sp, KernelPlan):
            condition = "_use_kernels(x) and self.mode == \"chunk\" and T > 1"
            out.insert(0, (condition, self.kernel_lines(sp, state, sizes, reads)))
        return out

    def kernel_lines(self, kp: KernelPlan, state: str, sizes: str,
                     reads: dict[int, str]) -> list[str]:
        """q, k, v [B, T, H, K|V] (and g, beta) laid out for the kernel, the call, the state
        (fla's h = S^T) and the readout."""
        rec = kp.rec
        ce = ChunkEmitter(self.em, rec, sizes)
        heads, v_axes, k_axes = groups(rec, kp.chunk.layout)
        out = []
        args = []
        for var, product, axes in (("_kq", kp.q, k_axes), ("_kk", kp.k, k_axes),
                                   ("_kv", kp.v, v_axes)):
            text, token = ce.product(product)
            out.append(f"{var} = {ce.laid(text, token, (heads, axes))}.to(_KERNEL_DTYPE)")
            args.append(var)
        out.append("if mask is not None:")
        out.append("    _kv = _kv * mask.to(_KERNEL_DTYPE)[..., None, None]")
        if kp.g is not None:
            text, token = ce.logs_total(kp.g)
            if kp.spec.transition.value == "constant_decay":
                out.append(f"_kg = lay_out({text}, {sizes}, {(heads,)}).float()")
            else:
                per_channel = kp.chunk.per_channel
                laid = ce.laid(text, token, (heads, k_axes) if per_channel else (heads,))
                out.append(f"_kg = {laid}.float()")
                out.append("if mask is not None:")
                out.append(f"    _kg = _kg * mask.float(){'[..., None, None]' if per_channel else '[..., None]'}")  # noqa: E501
            args.append("_kg")
        if kp.beta is not None:
            text, token = ce.product(kp.beta)
            out.append(f"_kb = {ce.laid(text, token, (heads,))}.float()")
            out.append("if mask is not None:")
            out.append("    _kb = _kb * mask.float()")
            args.append("_kb")
        (read,) = rec.reads
        name = f"chunk_{kp.spec.name}"
        out.append(f"_o, _hT = {name}({', '.join(args)}, scale=1.0, "
                   f"initial_state={state}.transpose(-1, -2).contiguous(), "
                   "output_final_state=True)")
        out.append(f"{state} = _hT.transpose(-1, -2).to(work_dtype)")
        out.append(f"{reads[read.node]} = _o.to(work_dtype)")
        self.em.helper("lay_out")
        return out

    def kernels(self) -> str:
        from linarch.kernels.render import render_kernels
        from linarch.kernels.spec import DTYPES

        specs = [sp.spec for sp in self.plan.states if isinstance(sp, KernelPlan)]
        if not specs:
            return ""
        options = self.kernel_options()
        sources = [render_kernels(spec, options) for spec in specs]
        glue = (
            "import os as _os\n\n"
            f"_KERNEL_DTYPE = {DTYPES[self.triton.dtype]}\n\n\n"
            "def _use_kernels(x):\n"
            "    \"\"\"Fused kernels on a GPU, or everywhere under TRITON_INTERPRET=1.\"\"\"\n"
            "    return x.is_cuda or _os.environ.get(\"TRITON_INTERPRET\") == \"1\"\n"
        )
        return "\n\n" + "\n\n".join(s.rstrip("\n") for s in sources) + "\n\n\n" + glue

    def header(self) -> str:
        return (f"# Target: triton (kernel dtype {self.triton.dtype}, autotune "
                f"{self.triton.autotune}).\n" + super().header())


__all__ = ["generate", "TritonOptions", "TritonGenerator"]
