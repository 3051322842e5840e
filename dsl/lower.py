"""Syntax tree -> IR graph, resolving every name (the "names" stage of the pipeline).

Bindings are single-assignment: a name is defined once, except a declared state, whose
assignments are its update (inside the update, the state's name means S_{t-1}; after it, S_t;
several assignments are micro-steps within one token).
Reserved names: ``x`` (the input), ``I`` (identity), ``T`` (sequence length), ``time``, ``batch``.
"""

from __future__ import annotations

import difflib

from linarch.dsl import syntax as ast
from linarch.dsl.builtins import BUILTINS, RESERVED_VALUES
from linarch.dsl.diagnostics import Reporter
from linarch.dsl.ir import Builder, Module, Node, Op
from linarch.dsl.names import interface_problem
from linarch.dsl.params import PARAM_KINDS
from linarch.dsl.source import Source

COMPLEXITY_CLASSES = ("linear", "loglinear", "quadratic")


class _Broken(Exception):
    """An expression could not be lowered; it has been reported already."""


def lower(program: ast.Program, source: Source, report: Reporter) -> Module:
    return _Lowering(source, report).run(program)


class _Lowering:
    def __init__(self, source: Source, report: Reporter) -> None:
        self.source = source
        self.report = report
        self.b = Builder()
        self.env: dict[str, int] = {}
        self.states: dict[str, int] = {}  # declared, not yet updated
        self.param_names: list[str] = []
        self.updated: set[str] = set()
        self.seqlen: int | None = None
        self.returned = False
        self.broken: set[str] = set()  # defined by lines that failed to parse (reported)

    def run(self, program: ast.Program) -> Module:
        header = program.header
        self.broken = set(program.broken)
        self.input = self.b.add(Node(Op.INPUT, name="x"))
        name = header.name if header else "Mixer"
        if header and interface_problem(header.name):
            self.report("LA115", f"the mixer cannot be named `{header.name}`: "
                        f"{interface_problem(header.name)}", header.span,
                        "name it in CamelCase after the paper, e.g. `mixer GatedDeltaNet(...)`")
        if header:
            for hp in header.hparams:
                self._hparam(hp)
            if all(hp.name != "hidden_size" for hp in header.hparams):
                self.report("LA113", "the mixer needs a `hidden_size` hyper-parameter: the width "
                            "of its input x and of its output", header.span,
                            "add `hidden_size = 1024` to the header")
        complexity, complexity_span = None, None
        for stmt in program.statements:
            try:
                if isinstance(stmt, ast.ComplexityDecl):
                    if stmt.name not in COMPLEXITY_CLASSES:
                        self.report("LA403", f"unknown complexity class `{stmt.name}`", stmt.span,
                                    f"use one of: {', '.join(COMPLEXITY_CLASSES)}")
                    else:
                        complexity, complexity_span = stmt.name, stmt.span
                else:
                    self._stmt(stmt)
            except _Broken:
                continue
        if not self.returned and header is not None and "return" not in self.broken:
            self.report("LA110", "the mixer has no `return`", header.span,
                        "end the mixer with `return o_proj(o)`")
        for sname, sid in self.states.items():
            if sname not in self.updated and sname not in self.broken:
                node = self.b.graph.nodes[sid]["node"]
                self.report("LA108", f"state `{sname}` is declared but never updated", node.span,
                            f"add its update, e.g. `{sname} = {sname} + outer(v, k)`")
        return Module(name, self.b.graph, self.source, complexity, complexity_span)

    # ------------------------------------------------------------ statements
    def _hparam(self, hp: ast.HParam) -> None:
        if hp.name in RESERVED_VALUES or hp.name in self.env:
            code = "LA115" if hp.name in RESERVED_VALUES else "LA102"
            self.report(code, f"hyper-parameter `{hp.name}` is reserved or repeated", hp.span,
                        "rename it")
            return
        why = interface_problem(hp.name)
        if why:
            self.report("LA115", f"hyper-parameter `{hp.name}` cannot be a constructor keyword "
                        f"of the generated layer: {why}", hp.span, "rename it")
            return
        args: tuple[int, ...] = ()
        if isinstance(hp.default, (ast.Num, ast.Str, ast.Bool)):
            attrs: tuple = (("default", hp.default.value),)
        else:  # a formula of earlier hyper-parameters: the constructor computes it if omitted
            try:
                args = (self._expr(hp.default),)
            except _Broken:
                self._poison(hp.name, hp.span)
                return
            attrs = (("default", None),)
        if hp.range is not None:
            attrs += (("range", (hp.range[0].value, hp.range[1].value)),)
        nid = self.b.add(Node(Op.HPARAM, args, attrs=attrs, name=hp.name, span=hp.span))
        self.env[hp.name] = nid

    def _define(self, name: str, span, nid: int) -> None:
        if name in RESERVED_VALUES:
            self.report("LA115", f"`{name}` is reserved ({RESERVED_VALUES[name]})", span,
                        "choose another name")
            raise _Broken
        if name.startswith("_"):
            self.report("LA115", f"`{name}`: names starting with `_` are reserved for the "
                        "generated code", span, "drop the leading underscore")
            raise _Broken
        if name in self.env and self._poisoned(self.env[name]):
            raise _Broken  # its first definition failed and was reported
        if name in self.env:
            first = self.b.graph.nodes[self.env[name]]["node"].span
            where = f" (first defined at {first})" if first else ""
            self.report("LA102", f"`{name}` is already defined{where}", span,
                        "bindings are single-assignment; use a new name")
            raise _Broken
        self.env[name] = nid

    def _nesting_problem(self, kind: str, name: str) -> str | None:
        """Why a dotted parameter name cannot be built (None if it can). `a.b` is entry `b` of a
        container module `a` (an nn.ModuleDict), which holds modules only: a raw weight cannot
        live there, and no parameter can live inside another parameter."""
        if kind == "weight" and "." in name:
            return "a weight cannot live inside a container of modules; use `_` instead of `.`"
        for other in self.param_names:
            inner, outer = (name, other) if len(name) > len(other) else (other, name)
            if inner.startswith(outer + "."):
                return f"`{inner}` would live inside parameter `{outer}`"
        self.param_names.append(name)
        return None

    def _poisoned(self, nid: int) -> bool:
        node = self.b.graph.nodes[nid]["node"]
        return node.op is Op.CONST and bool(node.attr("error"))

    def _poison(self, name: str, span) -> None:
        """Bind a name whose definition failed (already reported), so uses stay quiet."""
        if name not in self.env and name not in RESERVED_VALUES:
            self.env[name] = self.b.add(Node(Op.CONST, attrs=(("error", True),), span=span))

    def _name_node(self, nid: int, name: str, span) -> int:
        node = self.b.graph.nodes[nid]["node"]
        if node.name is not None or node.op in (Op.IDENTITY, Op.AXIS):
            return self.b.add(Node(Op.ALIAS, (nid,), name=name, span=span))
        self.b.replace(nid, Node(node.op, node.args, node.keys, node.attrs, name, node.span))
        return nid

    def _stmt(self, stmt: ast.Stmt) -> None:
        if isinstance(stmt, (ast.Header, ast.Section)):
            return
        if isinstance(stmt, ast.ParamDecl):
            for pname, pspan in zip(stmt.names, stmt.name_spans or (stmt.span,) * len(stmt.names)):
                nesting = None
                why = interface_problem(pname) or (
                    nesting := self._nesting_problem(stmt.ctor.func, pname))
                if why:
                    self.report("LA115", f"parameter `{pname}` cannot name a submodule of the "
                                f"generated layer: {why}", pspan,
                                "rename the parameter" if nesting else
                                "use fla's submodule names (q_proj, o_norm, ...)")
                    for other in stmt.names:
                        self._poison(other, stmt.span)
                    raise _Broken
                try:
                    nid = self._param(stmt.ctor, pname, stmt.span)
                except _Broken:
                    for other in stmt.names:
                        self._poison(other, stmt.span)
                    raise
                self._define(pname, pspan, nid)
            return
        if isinstance(stmt, ast.StateDecl):
            try:
                dims = tuple(self._expr(d) for d in stmt.shape)
            except _Broken:
                self._poison(stmt.name, stmt.span)
                raise
            nid = self.b.add(Node(Op.STATE, dims, name=stmt.name, span=stmt.span))
            self._define(stmt.name, stmt.span, nid)
            self.states[stmt.name] = nid
            return
        if isinstance(stmt, ast.Assign):
            self._assign(stmt)
            return
        if isinstance(stmt, ast.Return):
            if self.returned:
                self.report("LA110", "the mixer returns twice", stmt.span, "keep one `return`")
                raise _Broken
            self.returned = True  # even if its value fails below (that is reported)
            value = self._expr(stmt.value)
            self.b.add(Node(Op.RETURN, (value,), span=stmt.span))
            return
        if isinstance(stmt, ast.LossDecl):
            value = self._expr(stmt.value)
            self.b.add(Node(Op.LOSS, (value,), name=stmt.name, span=stmt.span))
            return
        raise AssertionError(stmt)

    def _assign(self, stmt: ast.Assign) -> None:
        if stmt.name in self.states:
            # An update of a declared state. A second update of the same state in one token is
            # a micro-step (DeltaProduct's Householders): inside it, the name means the state
            # after the previous step.
            self.updated.add(stmt.name)  # even if its value fails below (that is reported)
            value = self._expr(stmt.value)
            current = self.env[stmt.name]
            nid = self.b.add(Node(Op.UPDATE, (current, value), name=stmt.name, span=stmt.span))
            self.env[stmt.name] = nid
            return
        try:
            value = self._expr(stmt.value)
        except _Broken:
            self._poison(stmt.name, stmt.span)
            raise
        if stmt.name in self.env or stmt.name in RESERVED_VALUES:
            self._define(stmt.name, stmt.name_span or stmt.span, value)
        nid = self._name_node(value, stmt.name, stmt.span)
        self._define(stmt.name, stmt.name_span or stmt.span, nid)

    def _param(self, ctor: ast.Call, pname: str, span) -> int:
        args: list[int] = []
        keys: list[str] = []
        chain = 0
        for a in ctor.args:
            if isinstance(a, ast.Chain):
                if chain or args:
                    self.report("LA105", "the widths `a -> b` come first, once", a.span,
                                f"write `{ctor.func}(in -> out, ...)`")
                    raise _Broken
                chain = len(a.items)
                for item in a.items:
                    args.append(self._expr(item))
                    keys.append("")
            elif isinstance(a, ast.Keyword):
                args.append(self._expr(a.value))
                keys.append(a.name)
            else:
                args.append(self._expr(a))
                keys.append("")
        if ctor.func not in PARAM_KINDS:
            close = difflib.get_close_matches(ctor.func, PARAM_KINDS, n=1)
            hint = f"did you mean `{close[0]}`?" if close else (
                f"parameter kinds: {', '.join(PARAM_KINDS)}")
            self.report("LA106", f"unknown parameter kind `{ctor.func}`",
                        ctor.func_span or ctor.span, hint)
            raise _Broken
        attrs = (("kind", ctor.func), ("chain", chain))
        return self.b.add(Node(Op.PARAM, tuple(args), tuple(keys) if any(keys) else (), attrs,
                               name=pname, span=span))

    # ------------------------------------------------------------ expressions
    def _expr(self, e: ast.Expr) -> int:
        if isinstance(e, ast.Num):
            return self.b.add(Node(Op.CONST, attrs=(("value", e.value),), span=e.span))
        if isinstance(e, ast.Str):
            return self.b.add(Node(Op.CONST, attrs=(("value", e.value),), span=e.span))
        if isinstance(e, ast.Bool):
            return self.b.add(Node(Op.CONST, attrs=(("value", e.value),), span=e.span))
        if isinstance(e, ast.Name):
            return self._ref(e)
        if isinstance(e, ast.Unary):
            return self.b.add(Node(Op.NEG, (self._expr(e.operand),), span=e.span))
        if isinstance(e, ast.Binary):
            left = self._expr(e.left)
            right = self._expr(e.right)
            return self.b.add(Node(Op.BINARY, (left, right), attrs=(("op", e.op),), span=e.span))
        if isinstance(e, ast.Reshape):
            value = self._expr(e.value)
            dims = tuple(self._expr(d) for d in e.dims)
            return self.b.add(Node(Op.RESHAPE, (value, *dims), span=e.span))
        if isinstance(e, ast.Call):
            return self._call(e)
        raise AssertionError(e)

    def _ref(self, e: ast.Name) -> int:
        if e.id == "x":
            return self.input
        if e.id == "I":
            return self.b.add(Node(Op.IDENTITY, span=e.span))
        if e.id in ("time", "batch"):
            return self.b.add(Node(Op.AXIS, attrs=(("axis", e.id),), span=e.span))
        if e.id == "T":
            if self.seqlen is None:
                self.seqlen = self.b.add(Node(Op.SEQLEN, name="T", span=e.span))
            return self.seqlen
        if e.id in self.env:
            return self.env[e.id]
        if e.id in self.broken:
            raise _Broken  # its definition failed to parse, which was reported
        candidates = list(self.env) + list(RESERVED_VALUES)
        close = difflib.get_close_matches(e.id, candidates, n=1)
        hint = f"did you mean `{close[0]}`?" if close else "define it before this line"
        self.report("LA101", f"`{e.id}` is not defined", e.span, hint)
        self.broken.add(e.id)  # reported once, at its first use
        raise _Broken

    def _call(self, e: ast.Call) -> int:
        target = self.env.get(e.func)
        args: list[int] = []
        keys: list[str] = []
        for a in e.args:
            if isinstance(a, ast.Chain):
                self.report("LA105", "`a -> b` widths belong in a parameter declaration", a.span,
                            "declare a parameter under `params:` and call it")
                raise _Broken
            if isinstance(a, ast.Keyword):
                args.append(self._expr(a.value))
                keys.append(a.name)
            else:
                args.append(self._expr(a))
                keys.append("")
        kw = tuple(keys) if any(keys) else ()
        if target is not None:
            node = self.b.graph.nodes[target]["node"]
            if self._poisoned(target):
                raise _Broken  # its declaration failed, which was reported
            if node.op is not Op.PARAM:
                self.report("LA107", f"`{e.func}` is a value, not a function or parameter",
                            e.func_span or e.span,
                            "only builtins and declared parameters are called")
                raise _Broken
            return self.b.add(Node(Op.APPLY, (target, *args), ("", *keys) if kw else (),
                                   span=e.span))
        if e.func in BUILTINS:
            return self.b.add(Node(Op.CALL, tuple(args), kw, (("fn", e.func),), span=e.span))
        if e.func in self.broken:
            raise _Broken  # its declaration failed to parse, which was reported
        if e.func in PARAM_KINDS:
            self.report("LA107", f"`{e.func}` is a parameter kind; declare a parameter with it",
                        e.func_span or e.span, f"under `params:` write `name : {e.func}(...)`")
            raise _Broken
        close = difflib.get_close_matches(e.func, list(BUILTINS) + list(self.env), n=1)
        hint = f"did you mean `{close[0]}`?" if close else "see docs/language.md for the builtins"
        self.report("LA106", f"unknown function `{e.func}`", e.func_span or e.span, hint)
        self.broken.add(e.func)  # reported once, at its first use
        raise _Broken
