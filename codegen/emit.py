"""Typed emitters: IR node -> Python expression text over torch tensors.

Values are laid out as the types say: a per-token value of type token[H, dk] is a tensor
[B, T, H, dk] in batched code and [B, H, dk] inside the recurrent loop (``Ctx.step``); static
values are Python numbers or parameter tensors. Broadcasting follows the language's rule
(per-head values extend over trailing axes), so operands get explicit ``[..., None]`` views
where torch's right-aligned rule would differ.

Nodes that touch time (convolutions, token shift, rotary, attention, cumsum) or that need a
cache are hoisted into statements of their own; everything else is inlined into its single user.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from linarch.codegen.names import param_path
from linarch.dsl.ir import Node, Op
from linarch.dsl.types import Kind, Type, shapes_equal
from linarch.dsl.unit import Unit

TIME_OPS = frozenset({"token_shift", "cumsum", "rotary", "attention"})

ELEMENTWISE = {
    "silu": "F.silu({})", "swish": "F.silu({})", "sigmoid": "torch.sigmoid({})",
    "tanh": "torch.tanh({})", "relu": "F.relu({})", "gelu": "F.gelu({})", "elu": "F.elu({})",
    "exp": "torch.exp({})", "log": "torch.log({})", "softplus": "F.softplus({})",
    "logsigmoid": "F.logsigmoid({})", "sqrt": "torch.sqrt({})", "abs": "torch.abs({})",
    "square": "torch.square({})",
}
SCALAR_FNS = {"exp": "math.exp({})", "log": "math.log({})", "sqrt": "math.sqrt({})",
              "abs": "abs({})", "square": "(({}) ** 2)", "sigmoid": "(1 / (1 + math.exp(-({}))))",
              "tanh": "math.tanh({})"}
ACTS = {"silu": "nn.SiLU()", "swish": "nn.SiLU()", "tanh": "nn.Tanh()", "relu": "nn.ReLU()",
        "gelu": "nn.GELU()", "sigmoid": "nn.Sigmoid()", "none": "nn.Identity()"}


class CodegenError(Exception):
    """A checked program that this backend cannot lower (says which construct and why)."""


@dataclass(frozen=True)
class Eye:
    """The identity transition, optionally scaled; becomes a tensor only next to one."""

    scale: str | None = None


@dataclass
class Ctx:
    step: bool = False  # inside the recurrent loop over t
    local: dict[int, str] = field(default_factory=dict)  # node -> loop-local variable
    inline: frozenset[int] = frozenset()  # nodes computed inside the loop


class Emitter:
    def __init__(self, unit: Unit, names: dict[int, str]) -> None:
        self.unit = unit
        self.m = unit.module
        self.names = dict(names)  # node -> materialised variable (batched)
        self.lines: list[str] = []  # batched statements, appended as hoisting requires
        self.counter = 0
        self.caches: list[tuple[str, str]] = []  # (cache key, variable holding its new value)

    # ------------------------------------------------------------------ helpers
    def ty(self, i: int) -> Type:
        return self.unit.types[i]

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"_{prefix}{self.counter}"

    def node(self, i: int) -> Node:
        return self.m.node(i)

    def feature_axis(self, i: int, ctx: Ctx, axis: int) -> int:
        """Tensor dim of feature axis ``axis`` (negative from the end) of value ``i``."""
        shape = self.ty(i).shape
        axis = axis if axis >= 0 else len(shape) + axis
        lead = 0 if self.ty(i).kind is Kind.STATIC else (1 if ctx.step else 2)
        return lead + axis

    def dims(self, nodes, ctx: Ctx) -> str:
        return ", ".join(f"int({self.expr(d, ctx)})" for d in nodes)

    def lead(self, ctx: Ctx) -> str:
        return "B" if ctx.step else "B, T"

    # ------------------------------------------------------------------ materialisation
    def materialize(self, i: int, ctx: Ctx | None = None) -> str:
        """Make node ``i`` a batched variable (emitting its statement once) and return its name."""
        if i in self.names:
            return self.names[i]
        name = self.fresh("v")
        text = self.expr(i, Ctx())
        self.lines.append(f"{name} = {text}")
        self.names[i] = name
        return name

    def ref(self, i: int, ctx: Ctx) -> str:
        if i in ctx.local:
            return ctx.local[i]
        if i in self.names:
            name = self.names[i]
            if ctx.step and self.ty(i).kind is Kind.TOKEN:
                return f"{name}[:, t]"
            return name
        return ""

    # ------------------------------------------------------------------ expressions
    def expr(self, i: int, ctx: Ctx):
        """Python text for node ``i`` (an ``Eye`` for identity-valued nodes)."""
        r = self.ref(i, ctx)
        if r:
            return r
        n = self.node(i)
        if ctx.step and i not in ctx.inline and self.ty(i).kind is Kind.TOKEN:
            self.materialize(i)
            return self.ref(i, ctx)
        op = n.op
        if op is Op.INPUT:
            return "x[:, t]" if ctx.step else "x"
        if op is Op.CONST:
            return repr(n.attr("value"))
        if op is Op.HPARAM:
            return f"self.{n.name}"
        if op is Op.SEQLEN:
            return "T"
        if op is Op.IDENTITY:
            return Eye()
        if op is Op.ALIAS:
            return self.expr(n.args[0], ctx)
        if op is Op.PARAM:
            return self._weight(i, n)
        if op is Op.NEG:
            inner = self.expr(n.args[0], ctx)
            if isinstance(inner, Eye):
                return Eye(f"(-{inner.scale})" if inner.scale else "(-1)")
            return f"(-{inner})"
        if op is Op.BINARY:
            return self._binary(i, n, ctx)
        if op is Op.RESHAPE:
            v = self.expr(n.args[0], ctx)
            dims = self.dims(n.args[1:], ctx)
            if self.ty(i).kind is Kind.STATIC:
                return f"{v}.reshape({dims})"
            return f"{v}.reshape({self.lead(ctx)}, {dims})"
        if op is Op.CALL:
            return self._call(i, n, ctx)
        if op is Op.APPLY:
            return self._apply(i, n, ctx)
        raise CodegenError(f"cannot emit {op.value} here")

    def _weight(self, i: int, n: Node) -> str:
        path = param_path(n.name)
        ty = self.ty(i)
        positional = n.positional()
        if len(positional) != len(ty.shape):  # leading storage-only 1s
            return f"{path}.reshape({', '.join(f'int({self.expr(d, Ctx())})' for d in positional[len(positional) - len(ty.shape):])})"  # noqa: E501
        return path

    def aligned(self, i: int, text: str, result: Type) -> str:
        """View operand ``i`` so torch's right-aligned broadcasting realises the language's
        left-aligned rule within ``result``'s feature shape."""
        shape = self.ty(i).shape
        if not shape or len(shape) >= len(result.shape):
            return text
        if shapes_equal(result.shape[: len(shape)], shape):
            extra = len(result.shape) - len(shape)
            return f"{text}[{'..., ' + ', '.join(['None'] * extra)}]"
        return text

    def _binary(self, i: int, n: Node, ctx: Ctx):
        a, b = n.args
        op = n.attr("op")
        ta, tb = self.ty(a), self.ty(b)
        ea, eb = self.expr(a, ctx), self.expr(b, ctx)
        if op == "@":
            return self._matmul(i, a, b, ea, eb)
        if isinstance(ea, Eye) or isinstance(eb, Eye):
            return self._with_eye(i, op, a, b, ea, eb)
        if ta.is_scalar_static and tb.is_scalar_static:
            return f"({ea} {op} {eb})"
        result = self.ty(i)
        return f"({self.aligned(a, ea, result)} {op} {self.aligned(b, eb, result)})"

    def _with_eye(self, i: int, op: str, a: int, b: int, ea, eb):
        if op == "*":
            eye, factor, other = (ea, eb, b) if isinstance(ea, Eye) else (eb, ea, a)
            if self.ty(other).shape:  # a per-head scale: [..., H] -> [..., H, 1, 1]
                factor = f"{factor}[..., None, None]"
            return Eye(factor if eye.scale is None else f"({eye.scale} * {factor})")
        eye, other_text = (ea, eb) if isinstance(ea, Eye) else (eb, ea)
        scale = eye.scale or "1.0"
        if isinstance(ea, Eye):  # scale * I op X
            return f"eye_add({other_text}, {scale}, {'-1.0' if op == '-' else '1.0'})"
        return f"eye_add({other_text}, {scale if op == '+' else f'(-{scale})'}, 1.0)"

    def _matmul(self, i: int, a: int, b: int, ea, eb):
        if isinstance(eb, Eye):
            return ea if eb.scale is None else f"({ea} * {eb.scale})"
        if isinstance(ea, Eye):
            return eb
        sa, sb = self.ty(a).shape, self.ty(b).shape
        if len(sb) < len(sa):  # matrix @ vector; the vector may omit leading (head) axes
            missing = len(sa) - 1 - len(sb)
            if missing:
                eb = f"{eb}[{'..., ' + ', '.join(['None'] * missing)}, :]"
            return f"torch.einsum('...mn,...n->...m', {ea}, {eb})"
        return f"({ea} @ {eb})"

    # ------------------------------------------------------------------ builtins
    def _call(self, i: int, n: Node, ctx: Ctx) -> str:
        fn = n.attr("fn")
        pos = n.positional()
        ty = self.ty(i)
        if fn in TIME_OPS:
            return self._time_op(i, n, fn, ctx)
        if fn == "arange":
            return f"torch.arange(int({self.expr(pos[0], ctx)}), device=x.device, dtype=x.dtype)"
        if fn in ELEMENTWISE:
            arg = self.expr(pos[0], ctx)
            if ty.is_scalar_static and fn in SCALAR_FNS:
                return SCALAR_FNS[fn].format(arg)
            return ELEMENTWISE[fn].format(arg)
        args = [self.expr(a, ctx) for a in pos]
        if fn == "l2norm":
            return f"l2norm({args[0]})"
        if fn == "entropy":
            return f"entropy({args[0]})"
        if fn in ("softmax", "sum", "mean"):
            over = n.keyword("over")
            axis = -1
            if over is not None:
                val = self.node(over).attr("value")
                if not isinstance(val, int):
                    raise CodegenError(f"`{fn}` over {val} has no causal lowering")
                axis = val
            dim = self.feature_axis(pos[0], ctx, axis)
            if fn == "softmax":
                return f"torch.softmax({args[0]}, dim={dim})"
            return f"{args[0]}.{fn}(dim={dim})"
        if fn in ("minimum", "maximum", "lerp"):
            al = [self.aligned(a, t, ty) for a, t in zip(pos, args)]
            if fn == "lerp":
                return f"({al[0]} + ({al[1]} - {al[0]}) * {al[2]})"
            return f"torch.{fn}({al[0]}, {al[1]})"
        if fn == "clamp":
            return f"torch.clamp({args[0]}, {args[1]}, {args[2]})"
        if fn == "outer":
            sa, sb = self.ty(pos[0]).shape, self.ty(pos[1]).shape
            left = self.aligned_lead(pos[0], args[0], len(ty.shape) - 2, len(sa) - 1)
            right = self.aligned_lead(pos[1], args[1], len(ty.shape) - 2, len(sb) - 1)
            return f"({left}[..., :, None] * {right}[..., None, :])"
        if fn == "diag":
            return f"torch.diag_embed({args[0]})"
        if fn == "dot":
            al = [self.aligned(a, t, self.ty(a) if len(self.ty(a).shape) >= len(self.ty(b).shape)
                               else self.ty(b)) for a, t, b in ((pos[0], args[0], pos[1]),
                                                                (pos[1], args[1], pos[0]))]
            return f"({al[0]} * {al[1]}).sum(-1)"
        if fn == "stack":
            return f"torch.stack([{', '.join(args)}], dim=-2)"
        if fn == "mix":
            return f"({args[0]} * {args[1]}[..., None]).sum(-2)"
        if fn == "concat":
            return f"torch.cat([{', '.join(args)}], dim=-1)"
        if fn == "slice":
            return f"{args[0]}[..., int({args[1]}):int({args[1]}) + int({args[2]})]"
        raise CodegenError(f"no PyTorch lowering for `{fn}`")

    def aligned_lead(self, i: int, text: str, want: int, have: int) -> str:
        """Insert singleton leading (head) axes so a vector operand of outer() has ``want``."""
        if have >= want:
            return text
        return f"{text}[{'..., ' + ', '.join(['None'] * (want - have))}, :]"

    def _time_op(self, i: int, n: Node, fn: str, ctx: Ctx) -> str:
        if ctx.step:
            raise CodegenError(f"`{fn}` inside a state update is not supported")
        pos = n.positional()
        name = self.fresh(fn[:5])
        if fn == "token_shift":
            arg = self.expr(pos[0], ctx)
            key = f"shift{i}"
            self.lines.append(f"{name}, new_cache[{key!r}] = token_shift({arg}, "
                              f"cache.get({key!r}))")
            self.caches.append((key, name))
        elif fn == "cumsum":
            arg = self.expr(pos[0], ctx)
            key = f"cumsum{i}"
            self.lines.append(f"{name} = {arg}.cumsum(1)")
            self.lines.append(f"if cache.get({key!r}) is not None:")
            self.lines.append(f"    {name} = {name} + cache[{key!r}].unsqueeze(1)")
            self.lines.append(f"new_cache[{key!r}] = {name}[:, -1]")
        elif fn == "rotary":
            arg = self.expr(pos[0], ctx)
            base = n.keyword("base")
            base_text = self.expr(base, ctx) if base is not None else "10000.0"
            self.lines.append(f"{name} = rotary({arg}, positions, {base_text})")
        elif fn == "attention":
            q, k, v = (self.expr(a, ctx) for a in pos)
            scale_node = n.keyword("scale")
            scale = (self.expr(scale_node, ctx) if scale_node is not None
                     else f"{q}.shape[-1] ** -0.5")
            key = f"kv{i}"
            self.lines.append(
                f"{name}, _kv = softmax_attention({q}, {k}, {v}, {scale}, "
                f"past=(cache[{key!r}+'k'], cache[{key!r}+'v']) if {key!r}+'k' in cache "
                f"else None, key_mask=attention_mask)")
            self.lines.append(f"new_cache[{key!r}+'k'], new_cache[{key!r}+'v'] = _kv")
        self.names[i] = name
        return name

    # ------------------------------------------------------------------ parameters
    def _apply(self, i: int, n: Node, ctx: Ctx) -> str:
        pnode = self.node(n.args[0])
        kind = pnode.attr("kind")
        path = param_path(pnode.name)
        arg = self.expr(n.args[1], ctx)
        xt = self.ty(n.args[1])
        if kind == "causal_conv":
            if ctx.step:
                raise CodegenError("a convolution inside a state update is not supported")
            name = self.fresh("conv")
            key = f"conv{i}"
            flat = arg if len(xt.shape) == 1 else f"{arg}.flatten(2)"
            self.lines.append(f"{name}, new_cache[{key!r}] = causal_conv({flat}, {path}.weight, "
                              f"{path}.bias, cache.get({key!r}))")
            if len(xt.shape) > 1:
                self.lines.append(f"{name} = {name}.reshape({arg}.shape)")
            self.names[i] = name
            return name
        if kind == "groupnorm" and len(xt.shape) > 1:
            return f"{path}({arg}.flatten({1 if ctx.step else 2})).reshape({arg}.shape)"
        return f"{path}({arg})"


def descendants(unit: Unit, i: int) -> set[int]:
    return nx.descendants(unit.module.graph, i)
