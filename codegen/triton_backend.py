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
from linarch.codegen.plan import KernelPlan, Product, StatePlan, Target, plan
from linarch.codegen.torch_backend import Generator, TorchOptions, checked
from linarch.dsl.unit import Unit


@dataclass(frozen=True)
class TritonOptions:
    """Every knob that changes the generated file (part of the cache key)."""

    chunk_size: int = 64
    # kernel input dtype (states are fp32): auto (bf16 on a GPU, fp32 under the interpreter,
    # chosen at import), bf16, fp16 or fp32
    dtype: str = "auto"
    autotune: bool = True  # False: one fixed config (the interpreter always runs one)


def generate(unit: Unit, *, chunk_size: int = 64, dtype: str = "auto",
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
        """The kernel's inputs laid out [B, T, H, K|V] (micro-steps interleaved along time),
        padded tokens made identity steps (no write, no decay, no rank-one term), the call, the
        state (fla's h = S^T) and the readout."""
        from linarch.kernels.render import input_names

        rec = kp.rec
        ce = ChunkEmitter(self.em, rec, sizes)
        heads, v_axes, k_axes = groups(rec, kp.chunk.layout)
        hk, hv = (heads, k_axes), (heads, v_axes)
        n = len(kp.k)
        out: list[str] = []

        def put(var: str, products: tuple[Product, ...], axes: tuple, cast: str) -> str:
            texts = [ce.laid(*ce.product(p), axes) for p in products]
            if len(texts) > 1:
                self.em.helper("interleave")
            value = texts[0] if len(texts) == 1 else f"interleave([{', '.join(texts)}])"
            out.append(f"{var} = {value}{cast}")
            return var

        kernel = ".to(_KERNEL_DTYPE)"
        args = [put("_kq", (kp.q,), hk, kernel), put("_kk", kp.k, hk, kernel),
                put("_kv", kp.v, hv, kernel)]
        names = input_names(kp.spec)
        inputs = {}
        for name, product in zip([x for x in names if x in ("p", "a", "b")], kp.vectors):
            inputs[name] = put(f"_k{name}", (product,), hk, kernel)
        if "g_gamma" in names:  # a static log-decay per head
            text, _ = ce.logs_total(kp.g)
            out.append(f"_kg = lay_out({text}, {sizes}, {(heads,)}).float()")
            inputs["g_gamma"] = "_kg"
        if "g" in names:
            per_channel = kp.spec.transition.per_channel_gate
            if kp.g is None:
                shape = "_kk.shape" if per_channel else "_kk.shape[:-1]"
                out.append(f"_kg = torch.zeros({shape}, dtype=torch.float32, device=x.device)")
            else:
                text, token = ce.logs_total(kp.g)
                laid = ce.laid(text, token, hk if kp.chunk.per_channel else (heads,))
                if per_channel and not kp.chunk.per_channel:  # one decay for every channel
                    laid = f"{laid}[..., None].expand_as(_kk)"
                out.append(f"_kg = {laid}.float()")
            inputs["g"] = "_kg"
        if kp.beta is not None:
            inputs["beta"] = put("_kbeta", kp.beta, (heads,), ".float()")
        rows = "mask" if n == 1 else f"mask.repeat_interleave({n}, dim=1)"
        out.append("if mask is not None:")
        out.append(f"    _kv = _kv * {rows}.to(_KERNEL_DTYPE)[..., None, None]")
        if "beta" in inputs:
            out.append(f"    _kbeta = _kbeta * {rows}.float()[..., None]")
        if "a" in inputs:
            out.append("    _ka = _ka * mask.to(_KERNEL_DTYPE)[..., None, None]")
        if "g" in inputs:
            extra = ", None" if kp.spec.transition.per_channel_gate else ""
            out.append(f"    _kg = _kg * mask.float()[..., None{extra}]")
        args += [inputs[name] for name in names]
        (read,) = rec.reads
        out.append(f"_o, _hT = chunk_{kp.spec.name}({', '.join(args)}, scale=1.0, "
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
        dtype = self.triton.dtype
        if dtype == "auto":
            dtype = "auto: bf16 on a GPU, fp32 interpreted"
        return (f"# Target: triton (kernel dtype {dtype}, autotune "
                f"{self.triton.autotune}).\n" + super().header())


__all__ = ["generate", "TritonOptions", "TritonGenerator"]
