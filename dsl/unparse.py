"""IR -> syntax tree, so that a module prints as DSL text and parses back to an equal graph.

Statements come out in node order; unnamed nodes (each used once, by construction) are inlined
into the expression that uses them.
"""

from __future__ import annotations

from linarch.dsl import syntax as ast
from linarch.dsl.ir import Module, Node, Op
from linarch.dsl.printer import format_number, format_program


def to_text(module: Module) -> str:
    return format_program(to_program(module))


def to_program(module: Module) -> ast.Program:
    u = _Unparser(module)
    hparams = tuple(
        ast.HParam(n.name, u.expr(n.args[0]) if n.args else _literal(n.attr("default")),
                   range=None if n.attr("range") is None
                   else tuple(_literal(v) for v in n.attr("range")))
        for _, n in module.nodes(Op.HPARAM)
    )
    lines = [ast.Line(ast.Header(module.name, hparams))]
    if module.complexity:
        lines.append(ast.Line(ast.ComplexityDecl(module.complexity)))
    in_params = False
    for i, node in module.nodes():
        stmt = u.statement(i, node)
        if stmt is None:
            continue
        if isinstance(stmt, ast.ParamDecl) and not in_params:
            lines.append(ast.Line(ast.Section("params")))
        in_params = isinstance(stmt, ast.ParamDecl)
        lines.append(ast.Line(stmt))
    return ast.Program(lines[0].stmt, tuple(lines))


def expression_text(module: Module, i: int) -> ast.Expr:
    """Node ``i`` as a syntax-tree expression (named values by name), for messages and `show`."""
    return _Unparser(module).expr(i)


def _literal(value) -> ast.Literal:
    if isinstance(value, bool):
        return ast.Bool(value)
    if isinstance(value, str):
        return ast.Str(value)
    return ast.Num(value, format_number(value))


class _Unparser:
    def __init__(self, module: Module) -> None:
        self.m = module

    def statement(self, i: int, node: Node) -> ast.Stmt | None:
        op = node.op
        if op in (Op.INPUT, Op.HPARAM, Op.SEQLEN):
            return None
        if op is Op.PARAM:
            return ast.ParamDecl((node.name,), self._ctor(node))
        if op is Op.STATE:
            return ast.StateDecl(node.name, tuple(self.expr(a) for a in node.args))
        if op is Op.UPDATE:
            return ast.Assign(node.name, self.expr(node.args[1]))
        if op is Op.RETURN:
            return ast.Return(self.expr(node.args[0]))
        if op is Op.LOSS:
            return ast.LossDecl(node.name, self.expr(node.args[0]))
        if op is Op.ALIAS:
            return ast.Assign(node.name, self.expr(node.args[0]))
        if node.name is not None:
            return ast.Assign(node.name, self.inline(node))
        return None

    def _ctor(self, node: Node) -> ast.Call:
        chain = node.attr("chain", 0)
        args: list = []
        if chain:
            args.append(ast.Chain(tuple(self.expr(a) for a in node.args[:chain])))
        for k, a in enumerate(node.args[chain:], start=chain):
            key = node.key(k)
            args.append(ast.Keyword(key, self.expr(a)) if key else self.expr(a))
        return ast.Call(node.attr("kind"), tuple(args))

    def expr(self, i: int) -> ast.Expr:
        node = self.m.node(i)
        if node.name is not None and node.op not in (Op.UPDATE,):
            return ast.Name(node.name)
        if node.op is Op.UPDATE:
            return ast.Name(node.name)
        return self.inline(node)

    def _args(self, node: Node, args: tuple[int, ...], offset: int = 0) -> tuple:
        out = []
        for k, a in enumerate(args, start=offset):
            key = node.key(k)
            out.append(ast.Keyword(key, self.expr(a)) if key else self.expr(a))
        return tuple(out)

    def inline(self, node: Node) -> ast.Expr:
        op = node.op
        if op is Op.CONST:
            return _literal(node.attr("value"))
        if op is Op.IDENTITY:
            return ast.Name("I")
        if op is Op.AXIS:
            return ast.Name(node.attr("axis"))
        if op is Op.NEG:
            return ast.Unary("-", self.expr(node.args[0]))
        if op is Op.BINARY:
            return ast.Binary(node.attr("op"), self.expr(node.args[0]), self.expr(node.args[1]))
        if op is Op.RESHAPE:
            return ast.Reshape(self.expr(node.args[0]), tuple(self.expr(a) for a in node.args[1:]))
        if op is Op.CALL:
            return ast.Call(node.attr("fn"), self._args(node, node.args))
        if op is Op.APPLY:
            param = self.m.node(node.args[0])
            return ast.Call(param.name, self._args(node, node.args[1:], offset=1))
        if op is Op.INPUT:
            return ast.Name("x")
        if op is Op.SEQLEN:
            return ast.Name("T")
        raise AssertionError(f"cannot inline {op}")
