"""Text -> syntax tree, reporting every syntax problem of a file at once.

Each logical line (see ``linarch.dsl.lines``) is parsed on its own with the Lark grammar in
``linarch/grammar``; a line that fails is reported with a caret and skipped, the others still
parse, so one typo never hides the rest of the file's diagnostics.
"""

from __future__ import annotations

import math
import re

from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from linarch.dsl import syntax as ast
from linarch.dsl.diagnostics import Reporter
from linarch.dsl.lines import LogicalLine, split
from linarch.dsl.source import Source, Span
from linarch.grammar.lalr import KEYWORDS, line_parser

TERMINAL_TEXT = {
    "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`", "COMMA": "`,`", "COLON": "`:`",
    "EQUAL": "`=`", "PLUS": "`+`", "MINUS": "`-`", "STAR": "`*`", "SLASH": "`/`", "AT": "`@`",
    "__ANON_0": "`->`", "__ANON_1": "`**`", "NAME": "a name", "INT": "a number",
    "FLOAT": "a number", "STRING": "a string", "$END": "the end of the line",
}


def parse(source: Source, report: Reporter) -> ast.Program:
    """Parse a whole program; problems go to ``report``, the tree holds every line that parsed."""
    logical, bracket_errors, trailing = split(source.text)
    bad_lines: set[int] = set()
    for err in bracket_errors:
        report("LA002", err.message, source.span(err.offset, err.offset + 1),
               "close every bracket on the statement that opened it")
        for ll in logical:
            if ll.start <= err.offset < ll.start + len(ll.text):
                bad_lines.add(ll.start)
    header: ast.Header | None = None
    lines: list[ast.Line] = []
    broken: list[str] = []
    for ll in logical:
        stmt = None if ll.start in bad_lines else _parse_line(source, ll, report)
        if stmt is None:
            broken.extend(_defined_by(ll.text))
            if header is None and not lines and _HEADER.match(ll.text):
                stmt = _salvage_header(source, ll)  # keep checking the body of the mixer
            if stmt is None:
                continue
        if isinstance(stmt, ast.Header):
            if header is not None or lines:
                report("LA003", "a file holds one mixer, and its header comes first", stmt.span,
                       "remove this header or move it to the top of the file")
                continue
            header = stmt
        elif header is None and not lines:
            report("LA003", "a program starts with a mixer header", stmt.span,
                   "begin the file with `mixer Name(hidden_size = 1024, num_heads = 4):`")
        lines.append(ast.Line(stmt, ll.comments_before, ll.comment, ll.blank_before))
    if header is None and not logical and not report.has_errors:
        report("LA003", "the file holds no mixer", source.span(0, 0),
               "begin the file with `mixer Name(hidden_size = 1024, num_heads = 4):`")
    return ast.Program(header, tuple(lines), trailing, tuple(dict.fromkeys(broken)))


_NAME = r"[A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_0-9]+)*"
_HEADER = re.compile(r"\s*mixer\b")
_DEFINES = (
    re.compile(rf"\s*state\s+({_NAME})"),
    re.compile(r"\s*(return)\b"),
    re.compile(rf"\s*({_NAME}(?:\s*,\s*{_NAME})*)\s*:(?!\s*$)"),  # parameter declaration
    re.compile(rf"\s*({_NAME})\s*=(?!=)"),  # assignment
)
_LITERAL = r'-?[0-9][0-9.]*(?:[eE][-+]?[0-9]+)?|"[^"\n]*"|true|false'
_HPARAM = re.compile(rf"({_NAME})\s*=\s*({_LITERAL})")


def _defined_by(text: str) -> list[str]:
    """The names a line that failed to parse meant to define, so that their uses later in the
    file are not reported again as undefined (one typo, one diagnostic)."""
    for pattern in _DEFINES:
        m = pattern.match(text)
        if m:
            return [n.strip() for n in m.group(1).split(",")]
    return []


def _salvage_header(source: Source, ll: LogicalLine) -> ast.Header | None:
    """A header that failed to parse, rebuilt from its name and ``name = literal`` pairs, so the
    body is still checked (its error has been reported)."""
    m = re.match(rf"\s*mixer\s+({_NAME})", ll.text)
    if not m:
        return None
    hparams = []
    for hp in _HPARAM.finditer(ll.text, m.end()):
        text = hp.group(2)
        span = source.span(ll.start + hp.start(), ll.start + hp.end())
        if text.startswith('"'):
            value: ast.Literal = ast.Str(text[1:-1], span)
        elif text in ("true", "false"):
            value = ast.Bool(text == "true", span)
        else:
            try:
                digits = len(text.lstrip("-"))
                number = float(text) if any(c in text for c in ".eE") else (
                    int(text) if digits <= MAX_INT_DIGITS else None)
            except ValueError:
                continue
            if number is None:
                continue
            if not math.isfinite(number):
                continue
            value = ast.Num(number, text, span)
        hparams.append(ast.HParam(hp.group(1), value, span))
    start = ll.start + len(ll.text) - len(ll.text.lstrip())
    span = source.span(start, ll.start + len(ll.text.rstrip()))
    return ast.Header(m.group(1), tuple(hparams), span)


def _parse_line(source: Source, ll: LogicalLine, report: Reporter) -> ast.Stmt | None:
    try:
        tree = line_parser().parse(ll.text)
    except UnexpectedInput as exc:
        _report_syntax(source, ll, exc, report)
        return None
    except Exception as exc:  # noqa: BLE001 - the parser must never leak a traceback
        report("LA001", f"cannot parse this line ({type(exc).__name__})",
               source.span(ll.start, ll.start + len(ll.text.rstrip())))
        return None
    return _Builder(source, ll.start, report).stmt(tree)


def _report_syntax(source: Source, ll: LogicalLine, exc: UnexpectedInput, report: Reporter) -> None:
    text = ll.text
    if isinstance(exc, UnexpectedCharacters):
        offset = ll.start + exc.pos_in_stream
        ch = text[exc.pos_in_stream]
        if ch == '"':
            report("LA004", "string is not closed on this line", source.span(offset, offset + 1),
                   'close the string with `"`')
        else:
            report("LA004", f"unexpected character `{ch}`", source.span(offset, offset + 1),
                   "names are letters, digits and `_`; operators are + - * / @ ** ->")
        return
    if isinstance(exc, UnexpectedEOF) or (
        isinstance(exc, UnexpectedToken) and exc.token.type == "$END"
    ):
        end = ll.start + len(text.rstrip())
        expected = _expected(getattr(exc, "expected", set()))
        report("LA001", f"the statement ends too early; expected {expected}",
               source.span(max(ll.start, end - 1), end), _hint_for(text))
        return
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    offset = ll.start + (tok.start_pos or 0)
    end = ll.start + (tok.end_pos or (tok.start_pos or 0) + len(str(tok)))
    what = f"keyword `{tok}`" if str(tok) in KEYWORDS else f"`{tok}`"
    expected = _expected(exc.expected)
    report("LA001", f"unexpected {what}; expected {expected}", source.span(offset, end),
           _hint_for(text, str(tok)))


def _expected(names: set[str]) -> str:
    shown = sorted({TERMINAL_TEXT.get(n, f"`{n.lower()}`" if n.lower() in KEYWORDS else n)
                    for n in names})
    shown = [s for s in shown if not s.startswith("__")]
    if not shown:
        return "something else"
    if len(shown) > 6:
        shown = shown[:6] + ["..."]
    return ", ".join(shown)


def _hint_for(text: str, token: str = "") -> str:
    stripped = text.strip()
    if token in KEYWORDS:
        return f"`{token}` is a reserved word; choose another name"
    if stripped.startswith("mixer"):
        return "a header is `mixer Name(hidden_size = 1024, num_heads = 4):`"
    if ":" in stripped and "=" not in stripped.split(":")[0] and not stripped.startswith("state"):
        return "a parameter is declared as `name : kind(args)`, e.g. `q_proj : linear(d -> H * dk)`"
    if stripped.startswith("state"):
        return "a state is declared as `state S : [H, dv, dk]`"
    return "a statement is `name = expression`, `state S : [..]`, `return expression` or a header"


class _Builder:
    """Lark tree of one line -> syntax dataclasses with file spans."""

    def __init__(self, source: Source, base: int, report: Reporter) -> None:
        self.source = source
        self.base = base
        self.report = report

    def span(self, node: Tree | Token) -> Span:
        if isinstance(node, Token):
            return self.source.span(self.base + node.start_pos, self.base + node.end_pos)
        return self.source.span(self.base + node.meta.start_pos, self.base + node.meta.end_pos)

    # statements
    def stmt(self, t: Tree) -> ast.Stmt:
        kind = t.data
        ch = t.children
        if kind == "header":
            hps = tuple(self.hparam(h) for h in ch[1:] if isinstance(h, Tree))
            return ast.Header(str(ch[0]), hps, self.span(t))
        if kind == "section":
            return ast.Section("params", self.span(t))
        if kind == "param_decl":
            names = tuple(str(c) for c in ch[:-1])
            spans = tuple(self.span(c) for c in ch[:-1])
            return ast.ParamDecl(names, self.expr(ch[-1]), self.span(t), spans)
        if kind == "state_decl":
            return ast.StateDecl(str(ch[0]), self.shape(ch[1]), self.span(t))
        if kind == "assign":
            return ast.Assign(str(ch[0]), self.expr(ch[1]), self.span(t), self.span(ch[0]))
        if kind == "return_stmt":
            return ast.Return(self.expr(ch[0]), self.span(t))
        if kind == "loss_decl":
            return ast.LossDecl(str(ch[0]), self.expr(ch[1]), self.span(t))
        if kind == "complexity_decl":
            return ast.ComplexityDecl(str(ch[0]), self.span(t))
        raise AssertionError(f"unknown statement {kind}")

    def hparam(self, h: Tree) -> ast.HParam:
        parts = [c for c in h.children if c is not None]
        bounds = None
        if len(parts) == 4:
            bounds = (self.literal(parts[2]), self.literal(parts[3]))
        default = self.expr(parts[1])
        if isinstance(default, ast.Unary) and isinstance(default.operand, ast.Num):
            default = ast.Num(-default.operand.value, "-" + default.operand.text, default.span)
        return ast.HParam(str(parts[0]), default, self.span(h), bounds)

    def shape(self, t: Tree) -> tuple[ast.Expr, ...]:
        return tuple(self.expr(c) for c in t.children)

    def literal(self, t: Tree | Token) -> ast.Literal:
        if isinstance(t, Tree) and t.data == "neg_literal":
            inner = self.literal(t.children[0])
            assert isinstance(inner, ast.Num)
            return ast.Num(-inner.value, "-" + inner.text, self.span(t))
        e = self.expr(t)
        assert isinstance(e, (ast.Num, ast.Str, ast.Bool))
        return e

    def expr(self, t: Tree | Token):
        if isinstance(t, Token):  # pragma: no cover - every terminal is wrapped by an alias
            raise AssertionError(f"bare token {t!r}")
        kind = t.data
        ch = t.children
        sp = self.span(t)
        if kind == "int":
            if len(str(ch[0])) > MAX_INT_DIGITS:
                self.report("LA004", f"integer `{str(ch[0])[:12]}...` has {len(str(ch[0]))} "
                            "digits", sp, f"an integer literal has at most {MAX_INT_DIGITS} "
                            "digits; write large constants as floats (1e30)")
                return ast.Num(0, "0", sp)
            return ast.Num(int(ch[0]), str(ch[0]), sp)
        if kind == "float":
            value = float(ch[0])
            if not math.isfinite(value):
                self.report("LA004", f"number `{ch[0]}` is out of range", sp,
                            "a number literal must be a finite double (below about 1.8e308)")
            return ast.Num(value, str(ch[0]), sp)
        if kind == "string":
            return ast.Str(str(ch[0])[1:-1], sp)
        if kind == "true":
            return ast.Bool(True, sp)
        if kind == "false":
            return ast.Bool(False, sp)
        if kind == "name":
            return ast.Name(str(ch[0]), sp)
        if kind == "neg":
            return ast.Unary("-", self.expr(ch[0]), sp)
        if kind in BINARY:
            return ast.Binary(BINARY[kind], self.expr(ch[0]), self.expr(ch[1]), sp)
        if kind == "reshape":
            return ast.Reshape(self.expr(ch[0]), self.shape(ch[1]), sp)
        if kind == "call":
            args = tuple(self.arg(c) for c in ch[1:])
            return ast.Call(str(ch[0]), args, sp, self.span(ch[0]))
        raise AssertionError(f"unknown expression {kind}")

    def arg(self, t: Tree):
        if t.data == "chain":
            return ast.Chain(tuple(self.expr(c) for c in t.children), self.span(t))
        if t.data == "kwarg":
            return ast.Keyword(str(t.children[0]), self.expr(t.children[1]), self.span(t))
        return self.expr(t)


MAX_INT_DIGITS = 18  # an integer literal is a width, a count or an index

BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@", "pow": "**"}
