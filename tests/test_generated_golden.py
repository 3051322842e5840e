"""Golden snapshots of the generated files: every example's torch and Triton targets, byte for byte.

``tests/golden/generated/<example>.torch.py`` and ``<example>.triton.py`` are what
``linarch compile`` writes today; any codegen change shows up as a diff of these files in
review. After an intended change, regenerate with
``LINARCH_UPDATE_GOLDEN=1 pytest tests/test_generated_golden.py`` and read the diff.

Also what a reviewer expects of each file: it compiles, it carries only the runtime helpers it
calls, its header names the source by base name and hash, the class docstring is the program
in canonical form, decode-cache entries are named after the program's bindings, and the lines
the code generator writes stay within 100 columns.
"""

from __future__ import annotations

import ast
import hashlib
import os
from pathlib import Path

import pytest

import linarch
from linarch.codegen.build import CompileOptions, Target, build
from linarch.codegen.source_text import canonical_program
from linarch.dsl.source import Source
from linarch.kernels.render import render_kernels
from linarch.kernels.spec import KernelOptions
from linarch_testing.torch_cases import EXAMPLES, example_path, inputs, new_cache, run

GOLDEN = Path(__file__).parent / "golden" / "generated"
UPDATE = os.environ.get("LINARCH_UPDATE_GOLDEN") == "1"
NAMES = sorted(EXAMPLES)
TARGETS = {"torch": CompileOptions(Target.TORCH), "triton": CompileOptions(Target.TRITON)}


def _generated(name: str, target: str) -> str:
    source = Source(example_path(name).read_text(encoding="utf-8"), f"examples/{name}.lin")
    return build(source, TARGETS[target]).text


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("name", NAMES)
def test_generated_file_matches_golden(name: str, target: str) -> None:
    text = _generated(name, target)
    path = GOLDEN / f"{name}.{target}.py"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no {path.name}: run with LINARCH_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} changed: review the diff"


def test_every_example_has_both_snapshots() -> None:
    want = {f"{n}.{t}.py" for n in NAMES for t in TARGETS}
    assert {p.name for p in GOLDEN.glob("*.py")} == want


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("name", NAMES)
def test_generated_lines_fit_in_100_columns(name: str, target: str) -> None:
    """Lines the compiler writes; the kernels are the kernel renderer's, placed as rendered."""
    text = _generated(name, target)
    rendered = set()
    if target == "triton":
        compiled = build(Source(example_path(name).read_text(encoding="utf-8"),
                                f"examples/{name}.lin"), TARGETS[target])
        options = KernelOptions(chunk_size=TARGETS[target].chunk_size,
                                dtype=TARGETS[target].kernel_dtype)
        for sp in compiled.plan.states:
            spec = getattr(sp, "spec", None)
            if spec is not None:
                rendered |= set(render_kernels(spec, options).splitlines())
    long = [line for line in text.splitlines() if len(line) > 100 and line not in rendered]
    assert not long, long[:3]


def test_only_the_helpers_a_layer_calls_are_emitted() -> None:
    """Linear attention calls no UT transform helpers nor norms it does not use; each helper the
    file defines is called somewhere in it."""
    text = _generated("linear_attention", "torch")
    tree = ast.parse(text)
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    called = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert defined - {"LinearAttention"} <= called
    assert "GroupNorm" not in defined and "softmax_attention" not in defined
    assert "interleave" not in defined and "rotary" not in defined


def test_header_names_the_base_file_quoted_and_its_hash() -> None:
    path = example_path("deltanet")
    digest = hashlib.sha256(path.read_text(encoding="utf-8").encode()).hexdigest()[:16]
    first = _generated("deltanet", "torch").splitlines()[0]
    assert f"from 'deltanet.lin' (sha256 {digest})" in first


def test_a_crafted_file_name_cannot_inject_code() -> None:
    """A file name is pasted as a quoted literal in comments and the docstring: newlines and
    quotes in it neither end the comment nor the docstring."""
    text = (example_path("deltanet")).read_text(encoding="utf-8")
    evil = 'x"""\nimport os; os.system("echo pwned")  # \r\nraise SystemExit\n.lin'
    generated = build(Source(text, evil), CompileOptions()).text
    tree = ast.parse(generated)
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "os" not in imports
    assert not any(isinstance(n, ast.Raise) and "SystemExit" in ast.unparse(n)
                   for n in tree.body)
    layer_doc = ast.get_docstring(next(n for n in tree.body if isinstance(n, ast.ClassDef)
                                       and n.name == "DeltaNet"))
    assert "import os" in layer_doc  # the name is there, as text


def test_the_class_docstring_is_the_program_in_canonical_form() -> None:
    """The same words in the same order (long comment lines re-flow to fit the columns)."""
    cls = linarch.compile(example_path("gated_deltanet"))
    program = canonical_program(Source(example_path("gated_deltanet").read_text()), 92)
    def words(text: str) -> str:
        return " ".join(text.replace("#", " ").split())

    assert words(program) in words(cls.__doc__)


def test_a_comment_cannot_close_the_docstring() -> None:
    text = example_path("deltanet").read_text(encoding="utf-8").replace(
        "# unit vectors", '# """ ; import os ; """ \\\\ end')
    generated = build(Source(text, "q.lin"), CompileOptions()).text
    tree = ast.parse(generated)
    assert not any(isinstance(n, ast.Import) and n.names[0].name == "os" for n in tree.body)


def test_cache_entries_are_named_after_the_program() -> None:
    layer = linarch.compile(example_path("rwkv7"))(hidden_size=32, num_heads=2,
                                                   decay_low_rank_dim=8, a_low_rank_dim=8,
                                                   gate_low_rank_dim=8, layer_idx=0).double()
    cache = new_cache()
    run(layer, inputs(1, 3), cache=cache)
    assert set(cache.get_layer_state(0)) == {"S", "shift:x", "offset"}
    layer = linarch.compile(example_path("deltanet"))(hidden_size=32, num_heads=2,
                                                      layer_idx=0).double()
    cache = new_cache()
    run(layer, inputs(1, 3), cache=cache)
    assert set(cache.get_layer_state(0)) == {"S", "conv:q_conv1d", "conv:k_conv1d",
                                             "conv:v_conv1d", "offset"}
