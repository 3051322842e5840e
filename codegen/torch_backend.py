"""The PyTorch target: a checked unit and its plan -> one readable Python file needing only torch.

The file is the runtime helpers the layer uses (``runtime.py``, selected by name) and one
nn.Module rendered from a Jinja skeleton whose statements come from the typed emitters
(``emit.py``). The forward pass follows the plan's schedule; each recurrent state is one block
with up to two forms: the chunkwise-parallel form of its plan (``chunk_emit.py``), used for
training and prefill, and the recurrent form (``scan_emit.py``), token by token, generated
straight from the update as written (the reference, and the decoding path). The Triton target
(``triton_backend.py``) is this emitter with one more branch per state and the kernels.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from importlib import resources

import jinja2
import networkx as nx

from linarch.codegen.chunk_emit import chunk_lines
from linarch.codegen.emit import ACTS, CodegenError, Ctx, Emitter
from linarch.codegen.names import param_path, value_names
from linarch.codegen.plan import ChunkPlan, KernelPlan, Plan, StatePlan, Target, plan
from linarch.codegen.scan_emit import scan_lines
from linarch.codegen.source_text import (
    WIDTH,
    docstring,
    header_lines,
    string_literal,
    wrap_lines,
)
from linarch.dsl.ir import Node, Op
from linarch.dsl.params import PARAM_KINDS
from linarch.dsl.printer import format_expr
from linarch.dsl.recurrence import Recurrence
from linarch.dsl.unit import Unit
from linarch.dsl.unparse import expression_text

GENERATOR = "linarch 0.2.0"


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
def _template() -> jinja2.Template:
    text = resources.files("linarch.codegen").joinpath("templates/torch_module.py.j2").read_text(
        encoding="utf-8")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    return env.from_string(text)


def generate(unit: Unit, options: TorchOptions = TorchOptions(), the_plan: Plan | None = None,
             ) -> str:
    """Python source of the layer; raises CodegenError for constructs it cannot lower."""
    return checked(Generator(unit, options, the_plan or plan(unit, Target.TORCH)).render())


def checked(text: str) -> str:
    """Generated text, compiled by Python before anyone uses it."""
    try:
        compile(text, "<linarch generated>", "exec")
    except SyntaxError as exc:  # a backend bug, never the user's
        raise CodegenError(f"generated code does not compile: {exc}") from exc
    if "{{" in text or "{%" in text:
        raise CodegenError("generated code kept a template marker")
    return text


def state_lowerings(unit: Unit, target: Target = Target.TORCH) -> list[StateLowering]:
    """How each state is computed (for `linarch show` and the file header)."""
    return [lowering(p) for p in plan(unit, target).states]


def lowering(sp: StatePlan) -> StateLowering:
    rec = sp.rec
    return StateLowering(rec.name, rec.label, not hasattr(sp, "reason"), sp.how)


class Generator:
    target = Target.TORCH

    def __init__(self, unit: Unit, options: TorchOptions, the_plan: Plan) -> None:
        self.unit = unit
        self.m = unit.module
        self.options = options
        self.plan = the_plan
        self.names = {i: n for i, n in value_names(self.m).items()
                      if self.m.node(i).op is not Op.CONST or self._is_static_scalar(i)}
        self.em = Emitter(unit, self.names)

    # ------------------------------------------------------------------ statics and params
    def static_text(self, i: int) -> str:
        """A static scalar as Python over the constructor's local names."""
        n = self.m.node(i)
        if n.op is Op.HPARAM:
            return n.name
        if i in self.names and self._is_static_scalar(i):
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
        if n.op is Op.CALL and n.attr("fn") in ("round", "abs"):
            return f"{n.attr('fn')}({self.static_text(n.args[0])})"
        if n.op is Op.CALL and n.attr("fn") == "square":
            return f"({self.static_text(n.args[0])} ** 2)"
        if n.op is Op.CALL and n.attr("fn") in ("minimum", "maximum"):
            fn = "min" if n.attr("fn") == "minimum" else "max"
            return f"{fn}({', '.join(self.static_text(a) for a in n.args)})"
        raise CodegenError(f"`{n.op.value}` is not a static number")

    def _is_static_scalar(self, i: int) -> bool:
        return self.unit.types[i].is_scalar_static

    def hyper_table(self) -> str:
        """`HYPER_PARAMETERS`: each keyword's default or formula, range, integrality and use."""
        self.em.helpers |= {"Hyper", "resolve_hparams"}
        g = self.m.graph
        formulas = set()
        for _, n in self.m.hparams():
            if n.args:
                formulas |= nx.ancestors(g, n.args[0]) | {n.args[0]}
        lines = ["HYPER_PARAMETERS = {"]
        for i, n in self.m.hparams():
            ty = self.unit.types.get(i)
            args = []
            if n.args:
                reads = [self.m.node(a).name for a in self._formula_reads(n.args[0])]
                args.append(f"lambda {', '.join(reads)}: {self.static_text(n.args[0])}")
                args.append(f"reads={tuple(reads)!r}")
            else:
                args.append(repr(n.attr("default")))
            declared = n.attr("range")
            value = self.unit.defaults.get(ty.value) if ty is not None and ty.value is not None \
                else n.attr("default")
            if declared is not None:
                args += [f"low={declared[0]!r}", f"high={declared[1]!r}", "declared=True"]
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                args += ["low=0", "open_low=True"]
            if isinstance(value, int) and not isinstance(value, bool):
                args.append("integer=True")
            if not any(u not in formulas and self.m.node(u).op is not Op.HPARAM
                       for u in self.m.users(i)):
                args.append("used=False")
            lines.append(f"    {n.name!r}: Hyper({', '.join(args)}),")
        return "\n".join(wrap_lines(lines + ["}"], 4))

    def _formula_reads(self, i: int) -> list[int]:
        """The keywords a default formula reads directly (not those they derive from)."""
        found: set[int] = set()
        todo = [i]
        while todo:
            j = todo.pop()
            if self.m.node(j).op is Op.HPARAM:
                found.add(j)
                continue
            todo.extend(self.m.node(j).args)
        return sorted(found)

    def init_body(self) -> list[str]:
        names = [n.name for _, n in self.m.hparams()]
        given = ", ".join(f"{k}={k}" for k in names)
        lines = [f"hp = resolve_hparams(self.HYPER_PARAMETERS, dict({given}), "
                 f"{self.m.name!r})"]
        lines += [f"{k} = hp[{k!r}]" for k in names]
        for _, n in self.m.hparams():
            lines.append(f"self.{n.name} = {n.name}")
        lines += ["self.layer_idx = layer_idx", "self.mode = mode",
                  "self.chunk_size = chunk_size", "self.aux_loss = torch.zeros(())"]
        for i, n in self.m.nodes():
            if i in self.names and self._is_static_scalar(i) and n.op is not Op.HPARAM:
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

    def width(self, i: int) -> str:
        """A width in the constructor, checked to be a positive integer where it is computed."""
        n = self.m.node(i)
        if n.op is Op.CONST:
            return repr(n.attr("value"))
        text = self.static_text(i)
        root = i
        while self.m.node(root).op is Op.ALIAS:
            root = self.m.node(root).args[0]
        if self.m.node(root).op is Op.HPARAM and self.unit.types[i].value.is_integer:
            return text  # an integer keyword: the resolver checked it
        if self.m.node(i).name is not None and self.unit.types[i].value.is_integer and \
                self.m.node(i).op is Op.HPARAM:
            return text
        shown = format_expr(expression_text(self.m, i))
        return f"{self.em.helper('width')}({text}, {shown!r})"

    def _kw(self, n: Node, key: str) -> str:
        """A constructor keyword's value as code: its literal, its formula, or the default."""
        a = n.keyword(key)
        if a is None:
            return repr(PARAM_KINDS[n.attr("kind")].default(key))
        node = self.m.node(a)
        if node.op is Op.CONST:
            return repr(node.attr("value"))
        return self.static_text(a)

    def _choice(self, n: Node, key: str):
        """A keyword that selects code (act, init): a string literal (the type pass checks)."""
        a = n.keyword(key)
        return PARAM_KINDS[n.attr("kind")].default(key) if a is None else \
            self.m.node(a).attr("value")

    def _ctor(self, i: int, n: Node) -> str:
        kind = n.attr("kind")
        w = [self.width(a) for a in n.positional()]
        if kind == "linear":
            return f"nn.Linear({w[0]}, {w[1]}, bias={self._kw(n, 'bias')})"
        if kind == "mlp":
            act = ACTS[self._choice(n, "act")]
            bias = self._kw(n, "bias")
            layers = []
            for a, b in zip(w, w[1:]):
                layers.append(f"nn.Linear({a}, {b}, bias={bias})")
                layers.append(act)
            return f"nn.Sequential({', '.join(layers[:-1])})"
        if kind == "causal_conv":
            a = n.keyword("width")
            width = self.width(a) if a is not None else self._kw(n, "width")
            return (f"nn.Conv1d({w[0]}, {w[0]}, {width}, groups={w[0]}, "
                    f"bias={self._kw(n, 'bias')})")
        if kind == "rmsnorm":
            return f"{self.em.helper('RMSNorm')}({w[0]}, eps={self._kw(n, 'eps')}, " \
                   f"elementwise_affine={self._kw(n, 'affine')})"
        if kind == "layernorm":
            return (f"nn.LayerNorm({w[0]}, eps={self._kw(n, 'eps')}, "
                    f"elementwise_affine={self._kw(n, 'affine')}, bias={self._kw(n, 'bias')})")
        if kind == "groupnorm":
            return (f"{self.em.helper('GroupNorm')}({w[0]}, {w[1]}, eps={self._kw(n, 'eps')}, "
                    f"affine={self._kw(n, 'affine')}, bias={self._kw(n, 'bias')})")
        if kind == "weight":
            return f"nn.Parameter(torch.empty({', '.join(w)}))"
        raise CodegenError(f"no PyTorch constructor for `{kind}`")

    def reset_body(self) -> list[str]:
        lines = []
        for _, n in self.m.nodes(Op.PARAM):
            kind = n.attr("kind")
            init = self._choice(n, "init") if "init" in dict(PARAM_KINDS[kind].keywords) else None
            path = param_path(n.name)
            if kind == "weight":
                value = self._kw(n, "value")
                helper = {"a_log": "init_a_log", "dt_bias": "init_dt_bias",
                          "ramp": "init_ramp"}.get(init)
                if helper:
                    self.em.helper(helper)
                lines.append({
                    "zeros": f"nn.init.zeros_({path})",
                    "ones": f"nn.init.ones_({path})",
                    "normal": f"nn.init.normal_({path}, std=0.02)",
                    "uniform": f"nn.init.uniform_({path}, -0.02, 0.02)",
                    "constant": f"nn.init.constant_({path}, {value})",
                    "identity": f"nn.init.ones_({path})",
                    "a_log": f"init_a_log({path})",
                    "dt_bias": f"init_dt_bias({path})",
                    "ramp": f"init_ramp({path}, {value}, {self._kw(n, 'end')}, "
                            f"{self._kw(n, 'power')})",
                }[init])
            elif kind == "causal_conv" and init == "identity":
                lines.append(f"{self.em.helper('init_dirac')}({path}.weight)")
            elif kind == "linear" and self._choice(n, "bias_init") != "default":
                value = self._kw(n, "bias_value")
                init = (f"{self.em.helper('init_ramp')}({path}.bias, {value}, "
                        f"{self._kw(n, 'bias_end')}, {self._kw(n, 'bias_power')})"
                        if self._choice(n, "bias_init") == "ramp"
                        else f"nn.init.constant_({path}.bias, {value})")
                init_lines = [init,
                              f"{path}.bias._no_reinit = True  # the backbone keeps this init"]
                if self.m.node(n.keyword("bias")).op is not Op.CONST:  # a keyword may drop it
                    init_lines = [f"if {path}.bias is not None:"] + [
                        "    " + line for line in init_lines]
                lines += init_lines
        reads = [(i, n) for i, n in self.m.nodes() if n.op is Op.PARAM and any(
            n.keyword(key) is not None and self.m.node(n.keyword(key)).op is not Op.CONST
            for key in ("value", "bias_value", "end", "power", "bias_end", "bias_power"))]
        if reads:  # an init value computed from the keywords, which live on the layer
            statics = [self.names[i] for i, n in self.m.nodes() if i in self.names
                       and self._is_static_scalar(i)]
            lines = [f"{name} = self.{name}" for name in statics] + lines
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
                   if i in self.names and self._is_static_scalar(i)]
        for i, name in statics:
            node = self.m.node(i)
            out.append(f"{name} = self.{node.name if node.op is Op.HPARAM else name}")
        for i, _ in statics:
            em.names[i] = self.names[i]
        losses = []
        for item in self.plan.schedule:
            if isinstance(item, Recurrence):
                out += self.state_block(item)
                continue
            i = item
            n = self.m.node(i)
            if i in self.plan.inside:
                continue
            if n.op in (Op.LOSS, Op.RETURN):
                text = em.expr(n.args[0], Ctx())
                out.extend(em.lines)
                em.lines.clear()
                if n.op is Op.LOSS:
                    losses.append(f"({text}).mean()")
                else:
                    out.append(f"output = {text}")
                continue
            if (n.name is not None and i in self.names and n.op not in (Op.HPARAM, Op.CONST)
                    and not self._is_static_scalar(i) and n.op is not Op.PARAM):
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
    def read_names(self, rec: Recurrence, state: str) -> dict[int, str]:
        out = {}
        for k, r in enumerate(rec.reads):
            n = self.m.node(r.node)
            named = r.node in self.names and n.op not in (Op.STATE, Op.UPDATE)
            out[r.node] = self.names[r.node] if named else f"_{state}_read{k}"
        return out

    def branches(self, sp: StatePlan, state: str, sizes: str,
                 reads: dict[int, str]) -> list[tuple[str, list[str]]]:
        """(condition, statements) for each faster form of a state, tried before the scan."""
        chunk = sp.chunk if isinstance(sp, KernelPlan) else sp
        if not isinstance(chunk, ChunkPlan):
            return []
        lines = chunk_lines(self.em, chunk, state, sizes, reads)
        self.em.helpers |= {"chunk_dplr", "lay_out", "unlay"}
        if len(chunk.positions) > 1:
            self.em.helper("interleave")
        return [("self.mode == \"chunk\" and T > 1", lines)]

    def state_block(self, rec: Recurrence) -> list[str]:
        em = self.em
        sp = self.plan.state(rec)
        state = self.names.get(rec.state, "S")
        sizes = f"_{state}_sizes"
        dims = [f"int({em.expr(d, Ctx())})" for d in self.m.node(rec.state).args]
        out = list(em.lines)
        em.lines.clear()
        reads = self.read_names(rec, state)
        out.append(f"# state {rec.name}: {rec.label}; A = {rec.formula}")
        out.append(f"{state} = cache.get({rec.name!r})")
        out.append(f"if {state} is None:")
        out.append(f"    {state} = x.new_zeros(B{''.join(', ' + d for d in dims)}, "
                   "dtype=work_dtype)")
        fast = self.branches(sp, state, sizes, reads)
        hoisted = list(em.lines)
        em.lines.clear()
        scan = scan_lines(self.unit, em, rec, state, reads)
        hoisted += em.lines
        em.lines.clear()
        out += hoisted
        if fast:
            out.append(f"{sizes} = ({', '.join(dims)}{',' if len(dims) == 1 else ''})")
            for k, (condition, lines) in enumerate(fast):
                out.append(f"{'if' if k == 0 else 'elif'} {condition}:")
                out += ["    " + line for line in lines]
            out.append("else:")
            out += ["    " + line for line in scan]
        else:
            out += scan
        out.append(f"new_cache[{rec.name!r}] = {state}")
        for node, name in reads.items():
            # the state runs in fp32 (fp64); what it reads goes on in the layer's dtype
            out.append(f"{name} = {name}.to(x.dtype)")
            em.names[node] = name
        return out

    # ------------------------------------------------------------------ rendering
    def header(self) -> str:
        lines = header_lines(self.m.source, f"{GENERATOR} {self.target.value} target",
                             f"chunk_size={self.options.chunk_size}")
        for sp in self.plan.states:
            low = lowering(sp)
            lines.append(f"# state {low.name}: {low.label} -> {low.reason}")
        return "\n".join(wrap_lines(lines, 0))

    def kernels(self) -> str:
        """Extra module-level code between the runtime and the layer (the Triton target's)."""
        return ""

    def render(self) -> str:
        hparams = "".join(f"{n.name}=None, " for _, n in self.m.hparams())
        signature = (f"def __init__(self, {hparams}layer_idx=None, mode=\"chunk\", "
                     f"chunk_size={self.options.chunk_size}):")
        states = {lowering(sp).name: lowering(sp).reason for sp in self.plan.states}
        hyper = self.hyper_table()
        init = self.init_body()
        reset = self.reset_body()
        forward = self.forward_body()
        kernels = self.kernels()
        return _template().render(
            header=self.header(),
            runtime=runtime_source(frozenset(self.em.helpers)),
            kernels=kernels,
            class_name=self.m.name,
            doc=docstring(self.m),
            states=states_literal(states),
            hyper=hyper,
            init_signature="\n".join(wrap_lines([signature], 4)),
            init_body="\n".join(wrap_lines(init, 8)),
            reset_body="\n".join(wrap_lines(reset, 8)),
            forward_body="\n".join(wrap_lines(forward, 8)),
        )


def states_literal(states: dict[str, str]) -> str:
    """`STATES = {...}`: each state and how it is computed, one per line within 100 columns."""
    if not states:
        return "STATES = {}"
    lines = ["STATES = {"]
    for name, how in states.items():
        key = repr(name) + ": "
        # the template indents these lines by 4 more; the last literal is followed by "),"
        lines.append(f"    {key}{string_literal(how, 4 + len(key), WIDTH - 5)},")
    return "\n".join(lines + ["}"])


# ---------------------------------------------------------------------------- the runtime


@cache
def _runtime_parts() -> tuple[str, tuple[tuple[str, str, frozenset[str]], ...]]:
    """runtime.py as (its preamble, then (name, source, names it reads) per definition)."""
    text = resources.files("linarch.codegen").joinpath("runtime.py").read_text(encoding="utf-8")
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    parts = []
    first = None
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if first is None:
            first = node
        names = _defined(node)
        start = node.lineno - 1
        # keep the comment block just above a definition with it
        while start > 0 and lines[start - 1].lstrip().startswith("#") and start - 1 >= (
                first.lineno - 1 if node is not first else 0):
            start -= 1
        source = "".join(lines[start:node.end_lineno])
        reads = frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
        parts.append((names, source, reads))
    preamble = "".join(lines[: (first.lineno - 1 if first else len(lines))])
    return preamble, tuple(parts)


def _defined(node: ast.stmt) -> str:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.Assign):
        return ",".join(t.id for t in node.targets[0].elts) if isinstance(
            node.targets[0], ast.Tuple) else node.targets[0].id
    raise CodegenError(f"runtime.py holds an unexpected statement at line {node.lineno}")


def runtime_source(used: frozenset[str]) -> str:
    """The runtime block with only the helpers in ``used`` and what they need, in file order."""
    preamble, parts = _runtime_parts()
    by_name = {}
    for names, _, reads in parts:
        for name in names.split(","):
            by_name[name] = reads
    need: set[str] = set()
    todo = [u for u in used if u in by_name]
    while todo:
        name = todo.pop()
        if name in need:
            continue
        need.add(name)
        todo += [r for r in by_name[name] if r in by_name and r not in need]
    blocks = [source for names, source, _ in parts if set(names.split(",")) & need]
    return preamble + "\n\n".join(b.rstrip("\n") + "\n" for b in blocks)


__all__ = ["generate", "TorchOptions", "state_lowerings", "CodegenError", "Generator",
           "runtime_source"]
