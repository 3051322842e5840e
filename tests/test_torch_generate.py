"""The generated PyTorch file itself (issue item 1): parsed before use, deterministic, standalone,
headed by the name and hash of its source; and the CLI writes exactly what the API returns."""

from __future__ import annotations

import ast
import hashlib
import re

import pytest
import torch

import linarch
from linarch.cli import main as cli_main
from linarch.codegen.loader import load_class
from linarch_testing.torch_cases import EXAMPLES, example_path

NAMES = sorted(EXAMPLES)
ALLOWED_IMPORTS = {"math", "torch", "torch.nn", "torch.nn.functional"}


@pytest.mark.parametrize("name", NAMES)
def test_source_is_deterministic_standalone_and_headed(name):
    path = example_path(name)
    text = linarch.generate(path)
    assert linarch.generate(path) == text  # same source, same options: same bytes
    tree = ast.parse(text)
    imports = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for a in node.names}
    imports |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imports <= ALLOWED_IMPORTS, imports

    digest = hashlib.sha256(path.read_text(encoding="utf-8").encode()).hexdigest()[:16]
    first = text.splitlines()[0]
    assert re.search(rf"from '{name}\.lin' \(sha256 {digest}\)", first), first
    assert "chunk_size=64" in text.splitlines()[2]

    other = linarch.generate(path, chunk_size=32)
    assert other != text and "chunk_size=32" in other.splitlines()[2]


@pytest.mark.parametrize("name", NAMES)
def test_every_state_has_a_chunked_form(name):
    """Each example's recurrence lowers onto chunk_dplr (none falls back to the token loop)."""
    cls = linarch.compile(example_path(name))
    assert cls.STATES and all(how.startswith("chunked") for how in cls.STATES.values())
    assert "chunk_dplr(" in cls.__linarch_source__


def test_loaded_class_runs_from_the_text_alone():
    text = linarch.generate(example_path("deltanet"))
    cls = load_class(text, "DeltaNet", "deltanet.lin")
    layer = cls(hidden_size=32, num_heads=2)
    out, _, _ = layer(torch.randn(1, 5, 32))
    assert out.shape == (1, 5, 32)
    assert cls.__linarch_source__ == text


def test_cli_writes_the_api_bytes(tmp_path):
    path = example_path("gated_deltanet")
    out = tmp_path / "gdn.py"
    assert cli_main(["compile", str(path), "--target", "torch", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == linarch.generate(path)
