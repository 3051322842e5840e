"""Split a program into logical lines: physical lines joined while a bracket is open.

Comments are blanked out (replaced by spaces of the same length) so that offsets inside a logical
line map one to one onto the file; the comment texts are kept for the formatter.
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN = {"(": ")", "[": "]"}
CLOSE = {")": "(", "]": "["}


@dataclass(frozen=True)
class LogicalLine:
    start: int  # offset of the first character in the file
    text: str  # comment-free text, same length as the raw slice
    comment: str | None  # comment on the last physical line, if any
    blank_before: bool  # an empty line precedes it (kept by the formatter)
    comments_before: tuple[str, ...]


@dataclass(frozen=True)
class BracketError:
    offset: int
    message: str


def split(text: str) -> tuple[list[LogicalLine], list[BracketError], tuple[str, ...]]:
    """Logical lines, bracket problems, and comments after the last statement."""
    lines: list[LogicalLine] = []
    errors: list[BracketError] = []
    pending_comments: list[str] = []
    blank = False
    buf: list[str] = []
    start = 0
    stack: list[tuple[str, int]] = []
    comment: str | None = None
    in_string = False
    i = 0
    n = len(text)

    def flush(end: int) -> None:
        nonlocal buf, comment, blank, pending_comments, inner
        body = "".join(buf)
        if body.strip():
            # comments on the inner physical lines of a bracketed statement go before it
            before = tuple(pending_comments) + tuple(inner)
            lines.append(LogicalLine(start, body, comment, blank, before))
            pending_comments = []
            blank = False
        elif comment is not None:
            pending_comments.extend(inner)
            pending_comments.append(comment)
        elif not pending_comments and lines:
            blank = True
        elif pending_comments:
            blank = blank or False
        buf = []
        comment = None
        inner = []

    inner: list[str] = []  # comments of earlier physical lines of the current logical line
    while i < n:
        ch = text[i]
        if in_string:
            buf.append(ch)
            if ch == '"' or ch == "\n":
                in_string = False
            i += 1
            continue
        if ch == "#":
            j = text.find("\n", i)
            j = n if j == -1 else j
            if comment is not None:
                inner.append(comment)
            comment = text[i + 1 : j].rstrip()
            buf.append(" " * (j - i))
            i = j
            continue
        if ch == '"':
            in_string = True
        elif ch in OPEN:
            stack.append((ch, i))
        elif ch in CLOSE:
            if stack and stack[-1][0] == CLOSE[ch]:
                stack.pop()
            else:
                errors.append(BracketError(i, f"`{ch}` closes nothing"))
        elif ch == "\n" and stack and _ends_statement(text, i, stack[0][1]):
            # Recovery: the next line is not indented past the line that opened the bracket, so
            # the bracket was left open by mistake; report it and keep the other lines intact.
            for open_ch, offset in stack:
                errors.append(BracketError(offset, f"`{open_ch}` is never closed"))
            stack.clear()
            flush(i)
            start = i + 1
            i += 1
            continue
        elif ch == "\n" and not stack:
            flush(i)
            start = i + 1
            i += 1
            continue
        buf.append(ch)
        i += 1
    for ch, offset in stack:
        errors.append(BracketError(offset, f"`{ch}` is never closed"))
    flush(n)
    trailing = tuple(pending_comments)
    return lines, errors, trailing


def _indent_of_line_at(text: str, offset: int) -> int:
    line_start = text.rfind("\n", 0, offset) + 1
    line = text[line_start:]
    return len(line) - len(line.lstrip(" \t"))


def _ends_statement(text: str, newline: int, open_offset: int) -> bool:
    """Whether the physical line after ``newline`` starts a new statement (see ``split``)."""
    rest = text[newline + 1 :]
    for raw in rest.split("\n"):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped[0] in ")]":
            return False
        indent = len(raw) - len(raw.lstrip(" \t"))
        return indent <= _indent_of_line_at(text, open_offset)
    return False
