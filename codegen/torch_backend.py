"""The PyTorch backend: a checked module -> one readable Python file that needs only torch.

The file is the runtime block (``runtime.py``, verbatim) and one nn.Module rendered from a
Jinja skeleton whose statements come from the typed emitters (``emit.py``). Each recurrent state
gets two forms: the generic chunkwise-parallel form (``chunk_lowering.py`` -> ``chunk_dplr``),
used for training and prefill, and the recurrent form, token by token, generated straight from
the update as written (the reference, and the decoding path).
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

import jinja2
import networkx as nx

from linarch.codegen import chunk_lowering
from linarch.codegen.emit import ACTS, TIME_OPS, CodegenError, Ctx, Emitter
from linarch.codegen.names import param_path, value_names
from linarch.dsl.ir import Node, Op
from linarch.dsl.params import PARAM_KINDS
from linarch.dsl.passes.transitions import Transition
from linarch.dsl.unit import Unit

GENERATOR = "linarch 0.1.0 torch backend"


@dataclass(frozen=True)
class TorchOptions:
    """Every knob that changes the generated torch code (part of the cache key)."""

    chunk_size: int = 64


@dataclass(frozen=True)
class StateLowering:
    name: str
    label: str
    chunked: bool
    reason: str  # how it is computed, or why it has no chunk form


@cache
def runtime_source() -> str:
    return resources.files("linarch.codegen").joinpath("runtime.py").read_text(encoding="utf-8")


@cache
def _template() -> jinja2.Template:
    text = resources.files("linarch.codegen").joinpath("templates/torch_module.py.j2").read_text(
        encoding="utf-8")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    return env.from_string(text)


def generate(unit: Unit, options: TorchOptions = TorchOptions()) -> str:
    """Python source of the layer; raises CodegenError for constructs it cannot lower."""
    gen = _Generator(unit, options)
    text = gen.render()
    try:
        ast.parse(text)
    except SyntaxError as exc:  # a backend bug, never the user's
        raise CodegenError(f"generated code does not parse: {exc}") from exc
    if "{{" in text or "{%" in text:
        raise CodegenError("generated code kept a template marker")
    return text


def state_lowerings(unit: Unit) -> list[StateLowering]:
    """How each state is computed (for `linarch show` and the file header)."""
    return _Generator(unit, TorchOptions()).lowerings()


class _Generator:
    def __init__(self, unit: Unit, options: TorchOptions) -> None:
        self.unit = unit
        self.m = unit.module
        self.options = options
        self.names = value_names(self.m)
        self.em = Emitter(unit, self.names)

    # ------------------------------------------------------------------ statics and params
    def static_text(self, i: int) -> str:
        """A static scalar as Python over the constructor's local names."""
        n = self.m.node(i)
        if n.op is Op.HPARAM:
            return n.name
        if i in self.names and n.op is not Op.HPARAM and self._is_static_scalar(i):
            return self.names[i]
        return self._static_inline(i)

    def _static_inline(self, i: int) -> str:
        n = self.m.node(i)
        if n.op is Op.CONST:
            return repr(n.attr("value"))
        if n.op is Op.HPARAM:
            return n.name
        if n.op is Op.ALIAS:
            return self.static_text(n.args[0])
        if n.op is Op.NEG:
            return f"(-{self.static_text(n.args[0])})"
        if n.op is Op.BINARY:
            a, b = (self.static_text(x) for x in n.args)
            return f"({a} {n.attr('op')} {b})"
        if n.op is Op.CALL and n.attr("fn") in ("exp", "log", "sqrt"):
            return f"math.{n.attr('fn')}({self.static_text(n.args[0])})"
        if n.op is Op.SEQLEN:
            raise CodegenError("T cannot size a parameter")
        raise CodegenError(f"`{n.op.value}` is not a static number")

    def _is_static_scalar(self, i: int) -> bool:
        return self.unit.types[i].is_scalar_static

    def init_body(self) -> list[str]:
        lines = []
        for _, n in self.m.hparams():
            lines.append(f"self.{n.name} = {n.name}")
        lines += ["self.layer_idx = layer_idx", "self.mode = mode",
                  "self.chunk_size = chunk_size", "self.aux_loss = torch.zeros(())"]
        for i, n in self.m.nodes():
            if i in self.names and self._is_static_scalar(i) and n.op not in (Op.HPARAM,
                                                                              Op.CONST):
                lines.append(f"{self.names[i]} = {self._static_inline(i)}")
                lines.append(f"self.{self.names[i]} = {self.names[i]}")
        made: set[str] = set()
        for i, n in self.m.nodes(Op.PARAM):
            parts = n.name.split(".")
            for depth in range(1, len(parts)):
                prefix = ".".join(parts[:depth])
                if prefix not in made:
                    made.add(prefix)
                    lines.append(f"{param_path(prefix)} = nn.ModuleDict()")
            lines.append(f"{param_path(n.name)} = {self._ctor(i, n)}")
        return lines

    def _kw(self, n: Node, key: str):
        a = n.keyword(key)
        if a is None:
            return PARAM_KINDS[n.attr("kind")].default(key)
        node = self.m.node(a)
        if node.op is Op.CONST:
            return node.attr("value")
        return self.static_text(a)

    def _ctor(self, i: int, n: Node) -> str:
        kind = n.attr("kind")
        w = [f"int({self.static_text(a)})" for a in n.positional()]
        if kind == "linear":
            return f"nn.Linear({w[0]}, {w[1]}, bias={self._kw(n, 'bias')!r})"
        if kind == "mlp":
            act = ACTS[self._kw(n, "act")]
            bias = self._kw(n, "bias")
            layers = []
            for a, b in zip(w, w[1:]):
                layers.append(f"nn.Linear({a}, {b}, bias={bias!r})")
                layers.append(act)
            return f"nn.Sequential({', '.join(layers[:-1])})"
        if kind == "causal_conv":
            width = self._kw(n, "width")
            return (f"nn.Conv1d({w[0]}, {w[0]}, int({width}), groups={w[0]}, "
                    f"bias={self._kw(n, 'bias')!r})")
        if kind == "rmsnorm":
            return f"RMSNorm({w[0]}, eps={self._kw(n, 'eps')}, " \
                   f"elementwise_affine={self._kw(n, 'affine')!r})"
        if kind == "layernorm":
            return (f"nn.LayerNorm({w[0]}, eps={self._kw(n, 'eps')}, "
                    f"elementwise_affine={self._kw(n, 'affine')!r}, bias={self._kw(n, 'bias')!r})")
        if kind == "groupnorm":
            return (f"GroupNorm({w[0]}, {w[1]}, eps={self._kw(n, 'eps')}, "
                    f"affine={self._kw(n, 'affine')!r}, bias={self._kw(n, 'bias')!r})")
        if kind == "weight":
            return f"nn.Parameter(torch.empty({', '.join(w)}))"
        raise CodegenError(f"no PyTorch constructor for `{kind}`")

    def reset_body(self) -> list[str]:
        lines = []
        for _, n in self.m.nodes(Op.PARAM):
            kind = n.attr("kind")
            init = self._kw(n, "init") if "init" in dict(PARAM_KINDS[kind].keywords) else None
            path = param_path(n.name)
            if kind == "weight":
                value = self._kw(n, "value")
                lines.append({
                    "zeros": f"nn.init.zeros_({path})",
                    "ones": f"nn.init.ones_({path})",
                    "normal": f"nn.init.normal_({path}, std=0.02)",
                    "uniform": f"nn.init.uniform_({path}, -0.02, 0.02)",
                    "constant": f"nn.init.constant_({path}, {value})",
                    "identity": f"nn.init.ones_({path})",
                    "a_log": f"init_a_log({path})",
                    "dt_bias": f"init_dt_bias({path})",
                }[init])
            elif kind == "causal_conv" and init == "identity":
                lines.append(f"init_dirac({path}.weight)")
        return lines or ["pass"]

    # ------------------------------------------------------------------ forward
    def forward_body(self) -> list[str]:
        em = self.em
        out = [
            "x = hidden_states",
            "B, T = x.shape[0], x.shape[1]",
            "cache = {}",
            "if past_key_values is not None and self.layer_idx is not None:",
            "    cache = past_key_values.get_layer_state(self.layer_idx) or {}",
            "new_cache = {}",
            "mask = None",
            "if attention_mask is not None:",
            "    mask = attention_mask[:, -T:].to(x.dtype)",
            "    x = x * mask[..., None]",
            "offset = cache.get(\"offset\")",
            "positions = torch.arange(T, device=x.device)[None, :].expand(B, T)",
            "if offset is not None:",
            "    positions = positions + offset[:, None]",
            "work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32",
        ]
        statics = [(i, self.names[i]) for i, n in self.m.nodes()
                   if i in self.names and self._is_static_scalar(i) and n.op is not Op.CONST]
        if statics:
            targets = ", ".join(n for _, n in statics)
            sources = ", ".join(
                f"self.{self.m.node(i).name if self.m.node(i).op is Op.HPARAM else n}"
                for i, n in statics)
            out.append(f"{targets} = {sources}" + ("," if len(statics) == 1 else ""))
        for i, _ in statics:
            em.names[i] = self.names[i]
        inside = self._state_internal()
        losses = []
        for i, n in self.m.nodes():
            if i in inside:
                continue
            if n.op is Op.UPDATE and self._is_final_update(i):
                self._state_block(i, out)
                continue
            if n.op is Op.LOSS:
                text = em.expr(n.args[0], Ctx())
                out.extend(em.lines)
                em.lines.clear()
                losses.append(f"({text}).mean()")
                continue
            if n.op is Op.RETURN:
                text = em.expr(n.args[0], Ctx())
                out.extend(em.lines)
                em.lines.clear()
                out.append(f"output = {text}")
                continue
            if (n.name is not None and i in self.names and n.op not in (Op.HPARAM, Op.CONST)
                    and not self._is_static_scalar(i) and n.op is not Op.PARAM
                    and n.op not in (Op.STATE, Op.UPDATE)):
                name = self.names[i]
                del em.names[i]
                text = em.expr(i, Ctx())
                out.extend(em.lines)
                em.lines.clear()
                if text != name:
                    out.append(f"{name} = {text}")
                em.names[i] = name
        out.append("self.aux_loss = " + (" + ".join(losses) if losses
                                         else "torch.zeros((), device=x.device)"))
        out += [
            "if use_cache and past_key_values is not None and self.layer_idx is not None:",
            "    new_cache[\"offset\"] = positions[:, -1] + 1",
            "    past_key_values.set_layer_state(self.layer_idx, new_cache, T)",
            "return output, None, past_key_values",
        ]
        return out

    # ------------------------------------------------------------------ states
    def _updates(self) -> dict[int, Transition]:
        return {tr.update: tr for tr in self.unit.transitions}

    def _is_final_update(self, i: int) -> bool:
        return i in self._updates()

    def _readouts(self, tr: Transition) -> list[int]:
        return self.m.users(tr.update)

    def _state_internal(self) -> set[int]:
        """Nodes computed inside some state's recurrent step (never at top level)."""
        inside: set[int] = set()
        for tr in self.unit.transitions:
            inside |= self._local_set(tr) - {tr.update} - set(self._readouts(tr))
            inside |= set(self._readouts(tr))
        return inside

    def _local_set(self, tr: Transition) -> set[int]:
        m = self.m
        g = m.graph
        updates = [st.update for st in tr.steps]
        readouts = self._readouts(tr)
        local = set(updates) | set(readouts)
        dependent = nx.descendants(g, tr.state) | {tr.state}
        for i in sorted(nx.ancestors(g, tr.update) | set(readouts), reverse=True):
            if i in local:
                continue
            users = set(m.users(i))
            n = m.node(i)
            if i in dependent and users & local:
                local.add(i)
                continue
            if not users or not users <= local:
                continue
            if n.name is None and n.op in (Op.BINARY, Op.NEG, Op.IDENTITY, Op.CONST, Op.RESHAPE) \
                    or (n.op is Op.CALL and n.attr("fn") not in TIME_OPS and n.name is None):
                local.add(i)
        return local - {tr.state}

    def lowerings(self) -> list[StateLowering]:
        out = []
        for tr in self.unit.transitions:
            try:
                readouts = self._readouts(tr)
                readout = self._chunk_readout(tr, readouts)
                probe = Emitter(self.unit, self.names)
                chunk_lowering.plan(probe, tr, readout, dims=self._state_dims(tr))
                out.append(StateLowering(tr.name, tr.label, True,
                                         f"chunked ({tr.algorithm}; generic DPLR chunk form)"))
            except (chunk_lowering.NoChunkForm, CodegenError) as why:
                out.append(StateLowering(tr.name, tr.label, False,
                                         f"recurrent scan, token by token (slow): {why}"))
        return out

    def _state_dims(self, tr: Transition) -> tuple[str, ...]:
        return tuple(f"int({self.em.expr(d, Ctx())})" for d in self.m.node(tr.state).args)

    def _chunk_readout(self, tr: Transition, readouts: list[int]) -> int | None:
        if len(readouts) != 1:
            return None
        n = self.m.node(readouts[0])
        if n.op is Op.BINARY and n.attr("op") == "@" and n.args[0] == tr.update \
                and n.args[1] != tr.update:
            return readouts[0]
        return None

    def _state_block(self, upd: int, out: list[str]) -> None:
        em = self.em
        tr = self._updates()[upd]
        state = self.names.get(tr.state, "S")
        dims = ", ".join(f"int({em.expr(d, Ctx())})" for d in self.m.node(tr.state).args)
        out.extend(em.lines)
        em.lines.clear()
        readouts = self._readouts(tr)
        read_names = {r: f"_read_{state}{k}" for k, r in enumerate(readouts)}
        out.append(f"# state {tr.name}: {tr.label}; A = {tr.formula}")
        out.append(f"{state} = cache.get({tr.name!r})")
        out.append(f"if {state} is None:")
        out.append(f"    {state} = x.new_zeros(B, {dims}, dtype=work_dtype)")
        readout = self._chunk_readout(tr, readouts)
        chunk = None
        if readout is not None:
            try:
                chunk = chunk_lowering.plan(em, tr, readout, dims=self._state_dims(tr))
            except (chunk_lowering.NoChunkForm, CodegenError):
                chunk = None
        local = self._local_set(tr)
        # values the loop reads must exist before the branch
        step_lines = self._step_lines(tr, state, local, readouts, read_names)
        out.extend(em.lines)
        em.lines.clear()
        if chunk is not None:
            out.append("if self.mode == \"chunk\" and T > 1:")
            body = list(chunk.lines)
            call = (f"{read_names[readout]}, {state} = chunk_dplr({chunk.q}, {chunk.k}, "
                    f"{chunk.v}, g={chunk.g}, a={chunk.a}, c={chunk.c}, initial_state={state}, "
                    f"chunk_size=self.chunk_size)")
            body.append(call)
            if chunk.micro_steps > 1:
                n = chunk.micro_steps
                r = read_names[readout]
                body.append(f"{r} = {r}[:, {n - 1}::{n}]")
            out.extend("    " + line for line in body)
            out.append("else:")
            out.extend("    " + line for line in step_lines)
        else:
            out.extend(step_lines)
        out.append(f"new_cache[{tr.name!r}] = {state}")
        for r, name in read_names.items():
            # the state runs in fp32 (fp64); what it reads goes on in the layer's dtype
            out.append(f"{name} = {name}.to(x.dtype)")
            em.names[r] = name

    def _step_lines(self, tr: Transition, state: str, local: set[int], readouts: list[int],
                    read_names: dict[int, str]) -> list[str]:
        em = self.em
        ctx = Ctx(step=True, local={tr.state: state}, inline=frozenset(local))
        hidden = {i: em.names.pop(i) for i in list(em.names) if i in local}
        try:
            return self._step_body(tr, state, ctx, readouts, read_names)
        finally:
            em.names.update({i: n for i, n in hidden.items() if i not in read_names})

    def _step_body(self, tr: Transition, state: str, ctx: Ctx, readouts: list[int],
                   read_names: dict[int, str]) -> list[str]:
        em = self.em
        body: list[str] = []
        current = state
        for k, st in enumerate(tr.steps):
            node = self.m.node(st.update)
            text = em.expr(node.args[1], ctx)
            var = f"_{state}_next{k}"
            body.append(f"{var} = ({text}).to(work_dtype)")
            ctx.local[st.update] = var
            current = var
        body.append("if mask is not None:")
        body.append(f"    {current} = torch.where(mask[:, t].reshape(-1, {', '.join(['1'] * len(self.unit.types[tr.state].shape))}) > 0, {current}, {state})")  # noqa: E501
        body.append(f"{state} = {current}")
        ctx.local[tr.update] = state
        reads = []
        for r in readouts:
            text = em.expr(r, ctx)
            reads.append(text)
        lines = [f"_reads_{state} = []", "for t in range(T):"]
        lines += ["    " + b for b in body]
        lines.append(f"    _reads_{state}.append(({', '.join(reads)},))")
        for k, r in enumerate(readouts):
            lines.append(f"{read_names[r]} = torch.stack([_r[{k}] for _r in _reads_{state}], 1)")
        return lines

    # ------------------------------------------------------------------ rendering
    def header(self) -> str:
        src = self.m.source
        digest = hashlib.sha256(src.text.encode()).hexdigest()[:16]
        lines = [
            f"# Generated by {GENERATOR} from {src.name} (sha256 {digest}). Do not edit:",
            "# change the .lin source and run `linarch compile` again.",
            f"# Options: chunk_size={self.options.chunk_size}",
        ]
        for low in self.lowerings():
            lines.append(f"# state {low.name}: {low.label} -> {low.reason}")
        return "\n".join(lines)

    def render(self) -> str:
        hparams = ", ".join(f"{n.name}={n.attr('default')!r}" for _, n in self.m.hparams())
        states = {low.name: low.reason for low in self.lowerings()}
        doc = f"{self.m.name}: a sequence mixer compiled by linarch."
        forward = self.forward_body()
        return _template().render(
            header=self.header(),
            runtime=runtime_source(),
            class_name=self.m.name,
            doc=doc,
            source_name=self.m.source.name,
            states_doc=repr(states),
            hparam_args=hparams,
            chunk_size=self.options.chunk_size,
            init_body="\n".join(self.init_body()),
            reset_body="\n".join(self.reset_body()),
            forward_body="\n".join(forward),
        )


__all__ = ["generate", "TorchOptions", "state_lowerings", "CodegenError"]
