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
from linarch.dsl.types import Kind, Type, alignment
from linarch.dsl.unit import Unit

TIME_OPS = frozenset({"token_shift", "cumsum", "rotary", "attention", "fft_conv"})

ELEMENTWISE = {
    "silu": "F.silu({})", "swish": "F.silu({})", "sigmoid": "torch.sigmoid({})",
    "tanh": "torch.tanh({})", "relu": "F.relu({})", "gelu": "F.gelu({})", "elu": "F.elu({})",
    "exp": "torch.exp({})", "log": "torch.log({})", "softplus": "F.softplus({})",
    "logsigmoid": "F.logsigmoid({})", "sqrt": "torch.sqrt({})", "abs": "torch.abs({})",
    "square": "torch.square({})", "round": "torch.round({})",
}
SCALAR_FNS = {"exp": "math.exp({})", "log": "math.log({})", "sqrt": "math.sqrt({})",
              "abs": "abs({})", "square": "(({}) ** 2)", "sigmoid": "(1 / (1 + math.exp(-({}))))",
              "tanh": "math.tanh({})", "round": "round({})"}
ACTS = {"silu": "nn.SiLU()", "swish": "nn.SiLU()", "tanh": "nn.Tanh()", "relu": "nn.ReLU()",
        "gelu": "nn.GELU()", "sigmoid": "nn.Sigmoid()", "none": "nn.Identity()"}


class CodegenError(Exception):
    """A checked program that this backend cannot lower (says which construct and why)."""


@dataclass(frozen=True)
class Eye:
    """The identity transition, optionally scaled by per-head values (node, text); it becomes a
    tensor only next to one, where its scales are placed on that tensor's head axes."""

    scales: tuple[tuple[int | None, str], ...] = ()  # node None: a plain number


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
        self.keys: set[str] = set()  # decode-cache entries in use
        self.helpers: set[str] = set()  # runtime helpers the emitted code calls

    # ------------------------------------------------------------------ helpers
    def helper(self, name: str) -> str:
        """The name of a runtime helper, recorded as used (the file carries only those)."""
        self.helpers.add(name)
        return name

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
                return Eye(inner.scales + ((None, "(-1)"),))
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

    def place(self, i: int, text, axes: tuple[int, ...], rank: int, ctx: Ctx,
              full: bool = False) -> str:
        """View operand ``i`` (``text``) so that its feature axes stand on axes ``axes`` of a
        result with ``rank`` feature axes. Per-token values keep their batch and time axes in
        front, so they never align with a static axis (torch's own rule aligns from the
        right); static values are right-aligned by torch and get a view only when they stand
        elsewhere."""
        ty = self.ty(i)
        token = ty.kind is Kind.TOKEN
        if not isinstance(text, str) or not token and not ty.shape and not full:
            return text
        index = [":" if a in axes else "None" for a in range(rank)]
        if token:
            if len(axes) == rank:
                return text
            lead = [":"] if ctx.step else [":", ":"]
            return f"{text}[{', '.join(lead + index)}]"
        if not ty.shape:  # a static number, as a tensor of the result's rank
            return f"torch.as_tensor({text}, dtype=work_dtype, device=x.device)" + (
                f"[{', '.join(index)}]" if index else "")
        if not full and tuple(axes) == tuple(range(rank - len(axes), rank)):
            return text
        return f"{text}[{', '.join(index)}]"

    def aligned(self, i: int, text, result: Type, ctx: Ctx) -> str:
        """Operand ``i`` viewed onto ``result``'s feature shape by the language's broadcasting
        rule (``linarch.dsl.types.alignment``)."""
        where = alignment(self.ty(i).shape, result.shape)
        if where is None:
            raise CodegenError(f"operand {i} does not broadcast onto the result")
        return self.place(i, text, where, len(result.shape), ctx)

    def _binary(self, i: int, n: Node, ctx: Ctx):
        a, b = n.args
        op = n.attr("op")
        ta, tb = self.ty(a), self.ty(b)
        ea, eb = self.expr(a, ctx), self.expr(b, ctx)
        if op == "@":
            return self._matmul(i, a, b, ea, eb, ctx)
        if isinstance(ea, Eye) or isinstance(eb, Eye):
            return self._with_eye(i, op, a, b, ea, eb, ctx)
        if ta.is_scalar_static and tb.is_scalar_static:
            return f"({ea} {op} {eb})"
        result = self.ty(i)
        ea, eb = (self.number(x, t) for x, t in ((a, ea), (b, eb)))
        return f"({self.aligned(a, ea, result, ctx)} {op} {self.aligned(b, eb, result, ctx)})"

    def number(self, i: int, text):
        """A static integer formula next to a tensor, as a float: exact Python integers can
        exceed what torch converts (2 ** 64)."""
        ty = self.ty(i)
        if ty.is_scalar_static and ty.value.is_integer and self.node(i).op is not Op.CONST:
            return f"float({text})"
        return text

    def _with_eye(self, i: int, op: str, a: int, b: int, ea, eb, ctx: Ctx):
        if op in ("*", "/"):
            eye, other, text = (ea, b, eb) if isinstance(ea, Eye) else (eb, a, ea)
            text = f"(1 / {text})" if op == "/" else text
            return Eye(eye.scales + ((other, text),))
        eye, x = (ea, b) if isinstance(ea, Eye) else (eb, a)
        text = eb if isinstance(ea, Eye) else ea
        shape = self.ty(x).shape
        scale = self.eye_scale(eye, shape[:-2], len(shape), ctx)
        if isinstance(ea, Eye):  # scale * I op X
            return f"{self.helper('eye_add')}({text}, {scale}, {'-1.0' if op == '-' else '1.0'})"
        return f"{self.helper('eye_add')}({text}, {scale if op == '+' else f'(-{scale})'}, 1.0)"

    def eye_scale(self, eye: Eye, lead, rank: int, ctx: Ctx) -> str:
        """The product of a scaled identity's scales, each placed on the leading (head) axes of
        a result with ``rank`` feature axes."""
        parts = []
        for node, text in eye.scales:
            if node is None:
                parts.append(text)
                continue
            where = alignment(self.ty(node).shape, tuple(lead))
            if where is None:
                raise CodegenError("a scaled identity needs one value per head")
            parts.append(self.place(node, text, where, rank, ctx))
        return " * ".join(parts) if parts else "1.0"

    def _matmul(self, i: int, a: int, b: int, ea, eb, ctx: Ctx):
        if isinstance(eb, Eye):
            if not eb.scales:
                return ea
            shape = self.ty(a).shape
            return f"({ea} * {self.eye_scale(eb, shape[:-2], len(shape), ctx)})"
        if isinstance(ea, Eye):
            return eb
        sa, sb = self.ty(a).shape, self.ty(b).shape
        if len(sb) < len(sa):  # matrix @ vector; the vector may omit leading (head) axes
            lead = alignment(sb[:-1], sa[:-2])
            eb = self.place(b, eb, (*lead, len(sa) - 2), len(sa) - 1, ctx)
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
        if fn in ("l2norm", "entropy"):
            return f"{self.helper(fn)}({args[0]})"
        if fn in ("softmax", "sum", "mean"):
            over = n.keyword("over")
            axis = -1
            if over is not None:
                value = self.ty(over).value
                if value is None or not value.is_Integer:
                    raise CodegenError(f"`{fn}` over {self.ty(over).literal} has no causal "
                                       "lowering")
                axis = int(value)
            dim = self.feature_axis(pos[0], ctx, axis)
            if fn == "softmax":
                return f"torch.softmax({args[0]}, dim={dim})"
            return f"{args[0]}.{fn}(dim={dim})"
        if fn in ("minimum", "maximum", "lerp", "clamp"):
            return self._combine(fn, pos, args, ty, ctx)
        if fn == "outer":
            rank = len(ty.shape)
            placed = []
            for k, (a, t) in enumerate(zip(pos, args)):
                lead = alignment(self.ty(a).shape[:-1], ty.shape[:-2])
                placed.append(self.place(a, t, (*lead, rank - 2 + k), rank, ctx))
            return f"({placed[0]} * {placed[1]})"
        if fn == "diag":
            return f"torch.diag_embed({args[0]})"
        if fn == "dot":
            full = self.ty(pos[0]) if len(self.ty(pos[0]).shape) >= len(self.ty(pos[1]).shape) \
                else self.ty(pos[1])
            al = [self.aligned(a, t, full, ctx) for a, t in zip(pos, args)]
            return f"({al[0]} * {al[1]}).sum(-1)"
        kinds = {self.ty(a).kind for a in pos}
        if fn == "stack":
            items = ", ".join(args)
            items = f"*torch.broadcast_tensors({items})" if len(kinds) > 1 else items
            return f"torch.stack([{items}], dim=-2)"
        if fn == "mix":
            return f"({args[0]} * {args[1]}[..., None]).sum(-2)"
        if fn == "concat":
            if len(kinds) > 1:
                return f"{self.helper('cat_last')}({', '.join(args)})"
            return f"torch.cat([{', '.join(args)}], dim=-1)"
        if fn == "slice":
            return f"{args[0]}[..., int({args[1]}):int({args[1]}) + int({args[2]})]"
        raise CodegenError(f"no PyTorch lowering for `{fn}`")

    def _combine(self, fn: str, pos, args, ty: Type, ctx: Ctx) -> str:
        if ty.is_scalar_static or all(self.ty(a).is_scalar_static for a in pos):
            if fn == "lerp":
                return f"({args[0]} + ({args[1]} - {args[0]}) * {args[2]})"
            if fn == "clamp":
                return f"min(max({args[0]}, {args[1]}), {args[2]})"
            return f"{'min' if fn == 'minimum' else 'max'}({args[0]}, {args[1]})"
        al = [self.aligned(a, t, ty, ctx) for a, t in zip(pos, args)]
        if fn == "lerp":
            return f"({al[0]} + ({al[1]} - {al[0]}) * {al[2]})"
        if fn == "clamp":  # clamp(x, lo, hi) = min(max(x, lo), hi), also when lo > hi
            return f"torch.clamp({al[0]}, {al[1]}, {al[2]})"
        scalar = [self.ty(a).is_scalar_static for a in pos]
        if any(scalar):  # a number: torch.maximum needs two tensors
            tensor, number = (al[1], al[0]) if scalar[0] else (al[0], al[1])
            key = "min" if fn == "maximum" else "max"
            return f"torch.clamp({tensor}, {key}={number})"
        return f"torch.{fn}({al[0]}, {al[1]})"

    def cache_key(self, what: str, *nodes: int) -> str:
        """A decode-cache entry named after the program: `<what>:<name>`, the name of the first
        of ``nodes`` that has one (else the first node's position), unique within the layer."""
        name = next((self.node(i).name for i in nodes if self.node(i).name), None)
        base = f"{what}:{name}" if name else f"{what}:{nodes[0]}"
        key, k = base, 2
        while key in self.keys:
            key, k = f"{base}.{k}", k + 1
        self.keys.add(key)
        return key

    def _time_op(self, i: int, n: Node, fn: str, ctx: Ctx) -> str:
        if ctx.step:
            raise CodegenError(f"`{fn}` inside a state update is not supported")
        pos = n.positional()
        name = self.names.get(i) or self.fresh(fn[:5])
        if fn == "token_shift":
            arg = self.expr(pos[0], ctx)
            key = self.cache_key("shift", i, pos[0])
            self.lines.append(f"{name}, new_cache[{key!r}] = {self.helper('token_shift')}({arg}, "
                              f"cache.get({key!r}))")
        elif fn == "cumsum":
            arg = self.expr(pos[0], ctx)
            key = self.cache_key("cumsum", i, pos[0])
            self.lines.append(f"{name} = {arg}.cumsum(1)")
            self.lines.append(f"if cache.get({key!r}) is not None:")
            self.lines.append(f"    {name} = {name} + cache[{key!r}].unsqueeze(1)")
            self.lines.append(f"new_cache[{key!r}] = {name}[:, -1]")
        elif fn == "rotary":
            arg = self.expr(pos[0], ctx)
            base = n.keyword("base")
            base_text = self.expr(base, ctx) if base is not None else "10000.0"
            self.lines.append(f"{name} = {self.helper('rotary')}({arg}, positions, {base_text})")
        elif fn == "fft_conv":
            a, k = (self.expr(x, ctx) for x in pos)
            full = self.ty(i)
            a, k = (self.aligned(x, t, full, ctx) for x, t in zip(pos, (a, k)))
            key = self.cache_key("long_conv", i, pos[0])
            ka, kk = f"{key}.a", f"{key}.k"
            self.lines.append(
                f"{name}, (new_cache[{ka!r}], new_cache[{kk!r}]) = "
                f"{self.helper('causal_long_conv')}({a}, {k}, past=(cache[{ka!r}], "
                f"cache[{kk!r}]) if {ka!r} in cache else None)")
        elif fn == "attention":
            q, k, v = (self.expr(a, ctx) for a in pos)
            scale_node = n.keyword("scale")
            scale = (self.expr(scale_node, ctx) if scale_node is not None
                     else f"{q}.shape[-1] ** -0.5")
            key = self.cache_key("kv", i)
            keys, values = f"{key}.k", f"{key}.v"
            self.lines.append(
                f"{name}, (new_cache[{keys!r}], new_cache[{values!r}]) = "
                f"{self.helper('softmax_attention')}({q}, {k}, {v}, {scale}, "
                f"past=(cache[{keys!r}], cache[{values!r}]) if {keys!r} in cache else None, "
                "key_mask=attention_mask)")
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
            key = self.cache_key("conv", n.args[0])
            flat = arg if len(xt.shape) == 1 else f"{arg}.flatten(2)"
            self.lines.append(f"{name}, new_cache[{key!r}] = {self.helper('causal_conv')}({flat}, "
                              f"{path}.weight, {path}.bias, cache.get({key!r}))")
            if len(xt.shape) > 1:
                self.lines.append(f"{name} = {name}.reshape({arg}.shape)")
            self.names[i] = name
            return name
        if kind == "groupnorm" and len(xt.shape) > 1:
            return f"{path}({arg}.flatten({1 if ctx.step else 2})).reshape({arg}.shape)"
        return f"{path}({arg})"


def descendants(unit: Unit, i: int) -> set[int]:
    return nx.descendants(unit.module.graph, i)
