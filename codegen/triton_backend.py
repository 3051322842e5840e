"""The Triton target: one file with fused chunk kernels (linarch.kernels), the autograd
Function that runs them, and the same nn.Module as the PyTorch target (same constructor,
same state_dict).

Each state whose transition the kernels implement (identity, constant, scalar or diagonal decay,
delta, gated delta with a scalar gate) runs through ``chunk_<mixer>_<state>`` on a GPU (or under
TRITON_INTERPRET=1); any other state, and every state on a CPU without the interpreter, lowers
to the PyTorch chunk form. The file header and ``STATES`` say which.
"""

from __future__ import annotations

from dataclasses import dataclass

from linarch.codegen import chunk_lowering as cl
from linarch.codegen.emit import CodegenError
from linarch.codegen.torch_backend import TorchOptions, _Generator
from linarch.dsl.ir import Op
from linarch.dsl.passes.transitions import Gate, TClass, Transition, resolve
from linarch.dsl.types import Kind
from linarch.dsl.unit import Unit


@dataclass(frozen=True)
class TritonOptions:
    """Every knob that changes the generated file (part of the cache key)."""

    chunk_size: int = 64
    dtype: str = "bf16"  # kernel input dtype: bf16, fp16 or fp32 (states are fp32)
    autotune: bool = True  # False: one fixed config (required under TRITON_INTERPRET=1)


@dataclass(frozen=True)
class KernelCall:
    spec: object  # linarch.kernels.KernelSpec
    lines: tuple[str, ...]  # statements computing the operands
    args: tuple[str, ...]  # q, k, v and the spec's extra inputs, in order


def generate(unit: Unit, *, chunk_size: int = 64, dtype: str = "bf16",
             autotune: bool = True) -> str:
    return _TritonGenerator(unit, TritonOptions(chunk_size, dtype, autotune)).render_checked()


class _TritonGenerator(_Generator):
    def __init__(self, unit: Unit, options: TritonOptions) -> None:
        super().__init__(unit, TorchOptions(chunk_size=options.chunk_size))
        self.triton = options
        self.kernel_sources: list[str] = []
        self.kernel_states: dict[str, str] = {}

    # the kernel mapping ------------------------------------------------------------------
    def kernel_call(self, tr: Transition, em) -> KernelCall:
        from linarch.kernels.spec import KernelSpec
        from linarch.kernels.spec import Transition as KT

        if len(tr.steps) != 1 or tr.cls not in (
                TClass.IDENTITY, TClass.CONSTANT_DECAY, TClass.SCALAR_DECAY,
                TClass.DIAGONAL_DECAY, TClass.DELTA):
            raise cl.NoChunkForm(f"no fused kernel for class {tr.label}")
        if tr.cls is TClass.DELTA and tr.gate not in (Gate.NONE, Gate.SCALAR):
            raise cl.NoChunkForm(f"no fused kernel for the delta rule with a {tr.gate.value} gate")
        readout = self._chunk_readout(tr, self._readouts(tr))
        if readout is None:
            raise cl.NoChunkForm("the state is not read as S @ q")
        step = tr.steps[0]
        dims = self._state_dims(tr)
        heads, dv, dk = dims
        m = self.m
        start = len(em.lines)
        logs = [cl._log_of(em, f) for f in step.scales]
        for f in step.factors:
            n = m.node(resolve(m, f))
            if n.op is Op.CALL and n.attr("fn") == "diag":
                logs.append((cl._log_of(em, n.args[0])[0], True))
        per_channel = any(pc for _, pc in logs)
        static = all(self._static_log(f) for f in step.scales) and not per_channel and logs
        if tr.cls is TClass.DELTA:
            rank = step.rank_ones[0]
            if rank.u != rank.w or rank.sign > 0 or rank.base is not None \
                    or rank.scaled_identity is not None or len(step.writes) != 1:
                raise cl.NoChunkForm("not the plain delta rule I - beta k k^T")
            sign, write = step.writes[0]
            coef, v, k = cl._outer_term(em, resolve(m, write))
            if sign < 0 or resolve(m, k) != rank.u or rank.rate is None or len(coef) != 1 \
                    or resolve(m, self._coef_node(write)) != resolve(m, rank.rate):
                raise cl.NoChunkForm("the delta rule's write is not beta * outer(v, k)")
            if per_channel or (logs and static):
                raise cl.NoChunkForm("the delta kernels take a per-token scalar gate only")
            kind = KT.GATED_DELTA if logs else KT.DELTA
            v_text = cl._text(em, v)
            beta = cl._text(em, rank.rate)
            k_text = cl._heads(em, k)
        else:
            v_text, k_text = cl._writes(em, step.writes)
            beta = None
            if not logs:
                kind = KT.IDENTITY
            elif per_channel:
                kind = KT.DIAGONAL_DECAY
            elif static:
                kind = KT.CONSTANT_DECAY
            else:
                kind = KT.SCALAR_DECAY
        q_node = m.node(readout).args[1]
        q_text = cl._heads(em, q_node)
        out = list(em.lines[start:])
        del em.lines[start:]
        spec = KernelSpec(name=f"{_ident(m.name)}_{_ident(tr.name)}", transition=kind)
        cast = "_kdtype"
        out.append(f"_kq = torch.broadcast_to({q_text}, (B, T, {heads}, {dk})).to({cast})")
        out.append(f"_kk = torch.broadcast_to({k_text}, (B, T, {heads}, {dk})).to({cast})")
        out.append(f"_kv = torch.broadcast_to({v_text}, (B, T, {heads}, {dv})).to({cast})")
        out.append("if mask is not None:")
        out.append(f"    _kv = _kv * mask.to({cast})[..., None, None]")
        args = ["_kq", "_kk", "_kv"]
        if logs:
            total = " + ".join(t for t, _ in logs)
            if kind is KT.CONSTANT_DECAY:
                out.append(f"_kg = torch.broadcast_to({total}, ({heads},)).float()")
            elif per_channel:
                out.append(f"_kg = torch.broadcast_to({total}, (B, T, {heads}, {dk})).float()")
            else:
                out.append(f"_kg = torch.broadcast_to({total}, (B, T, {heads})).float()")
            if kind is not KT.CONSTANT_DECAY:
                out.append("if mask is not None:")
                extra = "[..., None, None]" if per_channel else "[..., None]"
                out.append(f"    _kg = _kg * mask.float(){extra}")
            args.append("_kg")
        if beta is not None:
            out.append(f"_kb = torch.broadcast_to({beta}, (B, T, {heads})).float()")
            out.append("if mask is not None:")
            out.append("    _kb = _kb * mask.float()")
            args.append("_kb")
        return KernelCall(spec, tuple(out), tuple(args))

    def _coef_node(self, write: int) -> int:
        n = self.m.node(resolve(self.m, write))
        a, b = n.args
        on = self.m.node(resolve(self.m, b))
        return a if on.op is Op.CALL and on.attr("fn") == "outer" else b

    def _static_log(self, f: int) -> bool:
        f = -f - 1 if f < 0 else f
        n = self.m.node(resolve(self.m, f))
        inner = n.args[0] if n.op is Op.CALL and n.attr("fn") == "exp" else f
        return self.unit.types[inner].kind is not Kind.TOKEN

    # hooks into the torch generator -------------------------------------------------------
    def lowerings(self):
        out = super().lowerings()
        for low in out:
            tr = next(t for t in self.unit.transitions if t.name == low.name)
            try:
                self.kernel_call(tr, _probe(self))
                where = "fused Triton kernels on GPU; "
            except (cl.NoChunkForm, CodegenError) as why:
                where = f"no fused kernel ({why}); "
            object.__setattr__(low, "reason", where + low.reason)
        return out

    def _state_block(self, upd: int, out: list[str]) -> None:
        tr = self._updates()[upd]
        em = self.em
        try:
            call = self.kernel_call(tr, em)
        except (cl.NoChunkForm, CodegenError):
            super()._state_block(upd, out)
            return
        from linarch.kernels.render import render_kernels
        from linarch.kernels.spec import KernelOptions

        options = KernelOptions(chunk_size=self.triton.chunk_size, dtype=self.triton.dtype,
                                autotune=self.triton.autotune)
        self.kernel_sources.append(render_kernels(call.spec, options))
        inner: list[str] = []
        super()._state_block(upd, inner)
        state = self.names.get(tr.state, "S")
        readout = self._chunk_readout(tr, self._readouts(tr))
        read = f"_read_{state}{self._readouts(tr).index(readout)}"
        # the inner block starts with the state's initialisation; keep it, then branch
        split = next(i for i, line in enumerate(inner) if line.startswith("if self.mode")
                     or line.startswith("_reads_"))
        out.extend(inner[:split])
        out.append("if _use_kernels(x) and self.mode == \"chunk\" and T > 1:")
        out.extend("    " + line for line in call.lines)
        out.append(f"    {read}, _hT = chunk_{call.spec.name}({', '.join(call.args)}, scale=1.0, "
                   f"initial_state={state}.transpose(-1, -2).contiguous(), "
                   "output_final_state=True)")
        out.append(f"    {read} = {read}.to(work_dtype)")
        out.append(f"    {state} = _hT.transpose(-1, -2).to(work_dtype)")
        rest = inner[split:]
        if rest and rest[0].startswith("if self.mode"):
            out.append("el" + rest[0])
            out.extend(rest[1:])
        else:
            out.append("else:")
            after = [r for r in rest if r.startswith("new_cache[") or r.endswith(".to(x.dtype)")]
            out.extend("    " + r for r in rest if r not in after)
            out.extend(after)
        for r, name in ((readout, read),):
            em.names[r] = name

    def render_checked(self) -> str:
        import ast

        text = self.render()
        ast.parse(text)
        return text

    def render(self) -> str:
        text = super().render()
        marker = f"\nclass {self.m.name}("
        head, _, body = text.rpartition(marker)
        kernels = "\n\n".join(_strip_header(src) for src in self.kernel_sources)
        glue = (
            "\n\nimport os as _os\n\n"
            "_kdtype = DTYPE\n\n\n"
            "def _use_kernels(x):\n"
            "    \"\"\"Fused kernels on a GPU, or everywhere under TRITON_INTERPRET=1.\"\"\"\n"
            "    return x.is_cuda or _os.environ.get(\"TRITON_INTERPRET\") == \"1\"\n"
        ) if self.kernel_sources else ""
        banner = (f"# Target: triton (kernel dtype {self.triton.dtype}, autotune "
                  f"{self.triton.autotune}).\n")
        return banner + head + ("\n\n" + kernels + glue if kernels else "") + marker + body


def _strip_header(src: str) -> str:
    lines = src.splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "\n".join(lines)


def _ident(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).lower()


def _probe(gen: _Generator):
    from linarch.codegen.emit import Emitter

    return Emitter(gen.unit, gen.names)


__all__ = ["generate", "TritonOptions"]
