"""Prompt templates as files, rendered with Jinja2 StrictUndefined, each with a version.

A template file in `search/prompts/` starts with a version comment and defines two blocks:

    {# version: researcher/1 #}
    {% block system %}...{% endblock %}
    {% block user %}...{% endblock %}

The declared version and a digest of the file's text are recorded with every LLM call, so a
transcript line always says which prompt produced it, even if someone edited the text without
bumping the version. A variable missing from the context is an error, never an empty string.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

PROMPTS_DIR = Path(__file__).parent / "prompts"
_VERSION = re.compile(r"\A\{#\s*version:\s*(\S+)\s*#\}")


class TemplateError(ValueError):
    """A template file is malformed (no version, missing block) or a render failed."""


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered template: what was sent, and which template text produced it."""

    name: str
    version: str
    digest: str
    system: str
    user: str

    def messages(self, history: Sequence[Message] = ()) -> list[Message]:
        head = [Message("system", self.system)] if self.system.strip() else []
        return [*head, *history, Message("user", self.user)]


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    digest: str
    _template: jinja2.Template

    def render(self, **context: Any) -> RenderedPrompt:
        try:
            ctx = self._template.new_context(dict(context))
            system = "".join(self._template.blocks["system"](ctx)).strip()
            user = "".join(self._template.blocks["user"](ctx)).strip()
        except jinja2.UndefinedError as err:
            raise TemplateError(f"prompt {self.name}: {err}") from err
        return RenderedPrompt(self.name, self.version, self.digest, system, user + "\n")


def load_template(name: str, directory: Path | None = None) -> PromptTemplate:
    """Load `name` (e.g. "researcher.md") from the prompts folder or `directory`."""
    return _load(name, str(directory or PROMPTS_DIR))


def available_templates(directory: Path | None = None) -> list[str]:
    return sorted(p.name for p in Path(directory or PROMPTS_DIR).glob("*.md"))


@lru_cache(maxsize=64)
def _load(name: str, directory: str) -> PromptTemplate:
    path = Path(directory) / name
    text = path.read_text(encoding="utf-8")
    match = _VERSION.match(text)
    if match is None:
        raise TemplateError(f"{path}: first line must be '{{# version: NAME/N #}}'")
    env = _environment(directory)
    try:
        template = env.get_template(name)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(f"{path}:{err.lineno}: {err.message}") from err
    missing = {"system", "user"} - set(template.blocks)
    if missing:
        raise TemplateError(f"{path}: missing block(s) {sorted(missing)}")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return PromptTemplate(name, match.group(1), digest, template)


@lru_cache(maxsize=8)
def _environment(directory: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["seq"] = _seq
    env.filters["curve"] = _curve
    return env


def _seq(values: Sequence[Any], digits: int = 3) -> str:
    """Per-seed numbers: `0.812, 0.790, 0.845`."""
    return ", ".join(_fmt(v, digits) for v in values) or "n/a"


def _curve(points: Sequence[Sequence[float]], most: int = 8) -> str:
    """A training curve in at most `most` points, always with the last: `100: 0.10, ...`."""
    pts = list(points)
    if len(pts) > most:
        step = (len(pts) - 1) / (most - 1)
        pts = [pts[round(i * step)] for i in range(most)]
    return ", ".join(f"{int(s)}: {_fmt(float(v), 3)}" for s, v in pts) or "n/a"


def _fmt(value: Any, digits: int = 4) -> str:
    """Numbers for prompts: fixed precision, and a visible 'n/a' for missing values."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_fmt(v, digits)}" for k, v in value.items())
    return str(value)
