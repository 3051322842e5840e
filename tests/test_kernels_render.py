"""Rendering: every valid spec gives a module that parses, stands on torch and triton alone, names
its spec and hash, and is the same bytes every time; the templates fail loudly when misused."""

import ast
import contextlib
import itertools
import os
import subprocess
import sys

import jinja2
import pytest

from linarch.kernels.loader import write_kernels
from linarch.kernels.render import (
    RenderError,
    _environment,
    check_rendered,
    input_names,
    render_kernels,
    template_context,
)
from linarch.kernels.spec import (
    GateFn,
    KernelOptions,
    KernelSpec,
    RateFn,
    SpecError,
    Transition,
    spec_hash,
)


def all_specs() -> list[KernelSpec]:
    specs = []
    for t, gate, rate, l2 in itertools.product(Transition, GateFn, RateFn, (False, True)):
        with contextlib.suppress(SpecError):
            specs.append(KernelSpec(f"{t.value}_{gate.value}_{rate.value}_{int(l2)}", t,
                                    l2norm_qk=l2, gate=gate, rate=rate))
    return specs


SPECS = all_specs()
GDN = KernelSpec("gated_deltanet", Transition.GATED_DELTA, l2norm_qk=True, gate=GateFn.MAMBA,
                 rate=RateFn.SIGMOID)


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def test_every_transition_gate_rate_and_norm_combination_is_covered():
    assert {s.transition for s in SPECS} == set(Transition)
    # identity 2, constant 2, scalar 3 gates x 2, diagonal 2 gates, delta 3 rates x 2,
    # gated delta 3 gates x 3 rates x 2, channel-gated delta 2 gates x 3 rates x 2,
    # iplr 3 gates x 3 rates, dplr 1; the other combinations raise SpecError
    assert len(SPECS) == 36 + 12 + 9 + 1


@pytest.mark.parametrize("options", [KernelOptions(), KernelOptions(chunk_size=16, dtype="fp32",
                                                                    autotune=False)],
                         ids=["autotuned-bf16-C64", "fixed-fp32-C16"])
def test_every_valid_spec_renders_a_standalone_module(options):
    for spec in SPECS:
        source = render_kernels(spec, options)  # parses and has no template syntax, or raises
        assert imported_modules(source) == {"torch", "triton"}, spec
        entry = next(node for node in ast.parse(source).body
                     if isinstance(node, ast.FunctionDef) and node.name == f"chunk_{spec.name}")
        assert [a.arg for a in entry.args.args] == [
            "q", "k", "v", *input_names(spec), "scale", "initial_state", "output_final_state",
            "cu_seqlens"]
        lines = source.splitlines()
        assert lines[1].startswith("# spec:    KernelSpec(name=")
        assert f"transition='{spec.transition.value}'" in lines[1]
        assert lines[3] == f"# hash:    {spec_hash(spec, options)}"
        assert f"AUTOTUNE = {options.autotune}" in source


def test_the_environment_at_generation_time_changes_nothing():
    """TRITON_INTERPRET=1 when a file is rendered neither turns its autotuning off nor changes a
    byte: the file decides at import whether it can time configs."""
    code = ("import sys; from linarch.kernels.render import *; "
            "from linarch.kernels.spec import *; sys.stdout.write(render_kernels("
            "KernelSpec('gated_deltanet', Transition.GATED_DELTA, l2norm_qk=True, "
            "gate=GateFn.MAMBA, rate=RateFn.SIGMOID)))")
    texts = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env={**os.environ, "TRITON_INTERPRET": flag}).stdout
             for flag in ("0", "1")}
    assert texts == {render_kernels(GDN)}
    assert "AUTOTUNE = True" in render_kernels(GDN)


def test_rendering_is_deterministic_across_calls_and_processes():
    source = render_kernels(GDN)
    assert render_kernels(GDN) == source
    code = ("import sys; from linarch.kernels.render import *; "
            "from linarch.kernels.spec import *; sys.stdout.write(render_kernels("
            "KernelSpec('gated_deltanet', Transition.GATED_DELTA, l2norm_qk=True, "
            "gate=GateFn.MAMBA, rate=RateFn.SIGMOID)))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout
    assert other == source


def test_every_option_changes_the_hash_and_the_text():
    base = KernelOptions()
    variants = [KernelOptions(chunk_size=32), KernelOptions(dtype="fp16"),
                KernelOptions(autotune=False), KernelOptions(autotune=False, num_warps=8),
                KernelOptions(solve_precision="tf32x3")]
    hashes = {spec_hash(GDN, base)} | {spec_hash(GDN, o) for o in variants}
    assert len(hashes) == len(variants) + 1
    texts = {render_kernels(GDN, o) for o in [base, *variants]}
    assert len(texts) == len(variants) + 1


def test_written_file_is_named_by_the_hash(tmp_path):
    path = write_kernels(GDN, KernelOptions(), tmp_path)
    assert path.name == f"linarch_kernels_gated_deltanet_{spec_hash(GDN, KernelOptions())}.py"
    assert path.read_text() == render_kernels(GDN)
    assert write_kernels(GDN, KernelOptions(), tmp_path) == path


def test_left_template_syntax_and_broken_python_are_refused():
    with pytest.raises(RenderError, match="template syntax"):
        check_rendered("x = 1\ny = '{{ name }}'\n", "t")
    with pytest.raises(RenderError, match="does not parse"):
        check_rendered("def f(:\n", "t")


def test_templates_refuse_a_missing_variable():
    context = template_context(GDN, KernelOptions())
    del context["chunk_size" if "chunk_size" in context else "BT"]
    with pytest.raises(jinja2.UndefinedError):
        _environment().get_template("module.py.j2").render(**context)


def test_generated_code_has_no_unused_names_or_stray_whitespace(tmp_path):
    """Generated files are meant to be read: pyflakes- and whitespace-clean (ruff F, W, E1)."""
    for i, spec in enumerate(SPECS):
        for options in (KernelOptions(), KernelOptions(chunk_size=16, autotune=False)):
            (tmp_path / f"m{i}_{options.chunk_size}.py").write_text(render_kernels(spec, options))
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated",
                             "--select", "F,W,E1", "--line-length", "200", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
