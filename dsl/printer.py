"""Syntax tree -> canonical text (``linarch fmt``, and the IR printer's last step).

Canonical form: the header on one line, the body indented four spaces, parameter declarations
under ``params:`` indented eight, binary operators with single spaces, minimal parentheses,
comments kept where they were. A line longer than the width breaks inside its brackets, aligned
after the bracket it breaks in (a sum at the top level of a binding is put in parentheses to
have one): the language continues a statement only inside brackets.
"""

from __future__ import annotations

from linarch.dsl import syntax as ast

INDENT = "    "
WIDTH = 100  # the header wraps to stay within the line length (ruff: 100)
# binding power of binary operators (higher binds tighter)
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "@": 2, "**": 4}
UNARY_PRECEDENCE = 3


def format_program(program: ast.Program, width: int = WIDTH) -> str:
    out: list[str] = []
    in_params = False
    for line in program.lines:
        stmt = line.stmt
        if isinstance(stmt, ast.Header):
            depth = 0
        elif isinstance(stmt, ast.Section):
            depth, in_params = 1, True
        elif isinstance(stmt, ast.ParamDecl) and in_params:
            depth = 2
        else:
            depth, in_params = 1, False
        if line.blank_before and out:
            out.append("")
        out.extend(INDENT * depth + "#" + c for c in line.comments_before)
        text = (format_header(stmt, width) if depth == 0
                else format_body_stmt(stmt, INDENT * depth, width))
        if line.comment_after is not None:
            text += "  #" + line.comment_after
        out.append(text)
    out.extend("#" + c for c in program.trailing_comments)
    return "\n".join(out) + "\n"


def format_header(stmt: ast.Stmt, width: int = WIDTH) -> str:
    """The header, wrapped at ``width`` with its hyper-parameters aligned after the `(`."""
    if not isinstance(stmt, ast.Header) or len(format_stmt(stmt)) <= width:
        return format_stmt(stmt)
    prefix = f"mixer {stmt.name}("
    items = [format_hparam(h) for h in stmt.hparams]
    pad = " " * len(prefix)
    lines = [prefix + items[0]]
    for k, item in enumerate(items[1:], start=1):
        tail = "):" if k == len(items) - 1 else ","
        if len(lines[-1]) + 2 + len(item) + len(tail) > width:
            lines[-1] += ","
            lines.append(pad + item)
        else:
            lines[-1] += ", " + item
    out: list[str] = []
    for k, line in enumerate(lines):  # a formula longer than a line breaks after a comma in it
        tail = 2 if k == len(lines) - 1 else 0  # the last line ends with "):"
        out += _break_formula(line, width, pad + "    ", 0 if line.startswith(prefix) else 1,
                              tail)
    return "\n".join(out) + "):"


def _break_formula(line: str, width: int, indent: str, depth: int, tail: int = 2) -> list[str]:
    """A header line whose formula is too long, broken after the last comma that fits inside
    the formula's brackets, else before the last operator that fits (``depth`` is how many
    brackets are open where the line starts; ``tail`` the characters that will follow it)."""
    if len(line) + tail <= width:
        return [line]
    commas: list[tuple[int, int]] = []
    operators: list[tuple[int, int]] = []
    open_ = depth
    for k, ch in enumerate(line):
        open_ += (ch in "([") - (ch in ")]")
        if open_ < 2:
            continue
        if ch == "," and k + 2 <= width - 2:
            commas.append((k + 1, open_))
        elif line[k:k + 3] in (" * ", " + ", " - ", " / ") and k < width - 4:
            operators.append((k, open_))
    found = commas or operators
    if not found:
        return [line]
    cut, open_at_cut = found[-1]
    return [line[:cut]] + _break_formula(indent + line[cut:].lstrip(), width, indent,
                                         open_at_cut)


def format_body_stmt(stmt: ast.Stmt, indent: str, width: int = WIDTH) -> str:
    """A statement of the body at ``indent``, broken over lines to fit ``width`` where it can."""
    text = indent + format_stmt(stmt)
    if len(text) <= width:
        return text
    value = getattr(stmt, "value", None)
    if isinstance(stmt, (ast.Assign, ast.Return, ast.LossDecl)) and isinstance(value, ast.Binary):
        head = format_stmt(stmt)[: -len(format_expr(value))]
        text = f"{indent}{head}({format_expr(value)})"
    return "\n".join(_wrap(text, width, []))


def _wrap(line: str, width: int, stack: list[int]) -> list[str]:
    """``line`` broken after a comma, else before a + or -, else before a * or /, inside the
    shallowest brackets that offer a break within ``width``; each continuation aligned after
    the bracket it breaks in. ``stack`` holds the columns after the brackets still open where
    the line starts."""
    if len(line) <= width:
        return [line]
    open_ = list(stack)
    # (depth, rank, position, column to align at, the brackets open at the cut)
    cuts: list[tuple[int, int, int, int, list[int]]] = []
    quoted = False
    for k, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        if quoted:
            continue
        if ch in "([":
            open_.append(k + 1)
        elif ch in ")]":
            open_.pop()
        elif open_ and ch == "," and k + 1 <= width:
            cuts.append((len(open_), 0, k + 1, open_[-1], list(open_)))
        elif open_ and line[k:k + 3] in (" + ", " - ", " * ", " / ") and k <= width:
            cuts.append((len(open_), 1 if line[k + 1] in "+-" else 2, k, open_[-1],
                         list(open_)))
    if not cuts:
        return [line]
    _, _, cut, column, open_at_cut = min(cuts, key=lambda c: (c[0], c[1], -c[2]))
    if column >= cut:  # aligning would not shorten the line
        return [line]
    rest = " " * column + line[cut:].lstrip()
    return [line[:cut].rstrip()] + _wrap(rest, width, open_at_cut)


def format_hparam(h: ast.HParam) -> str:
    text = f"{h.name} = {format_expr(h.default)}"
    if h.range is not None:
        text += f" in [{format_expr(h.range[0])}, {format_expr(h.range[1])}]"
    return text


def format_stmt(stmt: ast.Stmt) -> str:
    if isinstance(stmt, ast.Header):
        hps = ", ".join(format_hparam(h) for h in stmt.hparams)
        return f"mixer {stmt.name}({hps}):"
    if isinstance(stmt, ast.Section):
        return f"{stmt.name}:"
    if isinstance(stmt, ast.ParamDecl):
        return f"{', '.join(stmt.names)} : {format_expr(stmt.ctor)}"
    if isinstance(stmt, ast.StateDecl):
        return f"state {stmt.name} : [{', '.join(format_expr(d) for d in stmt.shape)}]"
    if isinstance(stmt, ast.Assign):
        return f"{stmt.name} = {format_expr(stmt.value)}"
    if isinstance(stmt, ast.Return):
        return f"return {format_expr(stmt.value)}"
    if isinstance(stmt, ast.LossDecl):
        return f"loss {stmt.name} = {format_expr(stmt.value)}"
    if isinstance(stmt, ast.ComplexityDecl):
        return f"complexity {stmt.name}"
    raise TypeError(f"not a statement: {stmt!r}")


def format_number(value: int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    return text


def format_expr(e, parent: int = 0) -> str:
    if isinstance(e, ast.Num):
        text = e.text if e.text else format_number(e.value)
        return f"({text})" if text.startswith("-") and parent > 0 else text
    if isinstance(e, ast.Str):
        return f'"{e.value}"'
    if isinstance(e, ast.Bool):
        return "true" if e.value else "false"
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Unary):
        text = "-" + format_expr(e.operand, UNARY_PRECEDENCE)
        return f"({text})" if parent > UNARY_PRECEDENCE else text
    if isinstance(e, ast.Binary):
        prec = PRECEDENCE[e.op]
        if e.op == "**":  # right-associative; the base is an atom in the grammar
            left = format_expr(e.left, 5)
            right = format_expr(e.right, UNARY_PRECEDENCE)
        else:
            left = format_expr(e.left, prec)
            right = format_expr(e.right, prec + 1)
        text = f"{left} {e.op} {right}"
        return f"({text})" if prec < parent else text
    if isinstance(e, ast.Call):
        return f"{e.func}({', '.join(format_arg(a) for a in e.args)})"
    if isinstance(e, ast.Reshape):
        text = f"{format_expr(e.value, 1)} as [{', '.join(format_expr(d) for d in e.dims)}]"
        return f"({text})" if parent > 0 else text
    raise TypeError(f"not an expression: {e!r}")


def format_arg(a) -> str:
    if isinstance(a, ast.Chain):
        return " -> ".join(format_expr(i) for i in a.items)
    if isinstance(a, ast.Keyword):
        return f"{a.name} = {format_expr(a.value)}"
    return format_expr(a)
