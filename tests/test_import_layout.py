"""No folder or module of this repository shadows a dependency, whatever folder Python starts in.

Python puts the working directory (``python -m``, ``python -c``), a script's own folder
(``python benchmarks/x.py``) or pytest's test folder first on sys.path. transformers 5.25 imports
Hugging Face's ``kernels`` package; while our ``kernels/`` folder was a regular package at the
repository root, ``python -m pytest`` from the root imported ours instead and every model test
failed at collection. The rules that prevent it:

- At the repository root only ``linarch`` is a regular package. Its subpackages are links to the
  folders beside it (dsl/, kernels/ ...), which hold no ``__init__.py``: an installed package of
  the same name always wins over them.
- In the folders that become sys.path[0] (tests/, benchmarks/) every module carries a name no
  dependency uses: pytest's ``conftest``/``test_*``, the ``linarch_testing`` helpers, ``bench_*``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120


def importable_names(folder: Path) -> set[str]:
    """The top-level names Python can import from `folder` as a regular module or package."""
    names = {p.stem for p in folder.glob("*.py")}
    names |= {p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    return {n for n in names if n.isidentifier()}


def run(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT, env={**os.environ, **env})


def test_only_linarch_is_a_regular_package_at_the_root():
    assert importable_names(ROOT) == {"linarch"}
    for link in ("dsl", "grammar", "codegen", "kernels", "search", "evaluation", "models",
                 "examples"):
        assert (ROOT / "linarch" / link).resolve() == ROOT / link
        assert not (ROOT / link / "__init__.py").exists(), link


@pytest.mark.parametrize("folder, allowed", [
    ("tests", lambda n: n == "conftest" or n.startswith("test_") or n == "linarch_testing"),
    ("benchmarks", lambda n: n.startswith("bench_")),
])
def test_script_folders_hold_only_project_specific_names(folder, allowed):
    names = importable_names(ROOT / folder)
    taken = set(packages_distributions()) | set(sys.stdlib_module_names)
    assert not names & taken, f"{folder}/ shadows {sorted(names & taken)}"
    assert all(allowed(n) for n in names), sorted(n for n in names if not allowed(n))


def test_a_dependency_named_like_a_folder_is_the_one_imported(tmp_path):
    """A site folder with packages named like each of our folders, and a dependency that imports
    one of them by name (as transformers imports `kernels`): from the repository root, the
    dependency's packages are the ones imported. Fails while any folder has an __init__.py."""
    folders = sorted(p.name for p in ROOT.iterdir()
                     if p.is_dir() and p.name.isidentifier() and p.name != "linarch")
    assert {"kernels", "search", "evaluation", "models", "dsl"} <= set(folders)
    site = tmp_path / "site"
    for name in folders:
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text("ORIGIN = 'dependency'\n")
    (site / "some_dependency.py").write_text(
        "".join(f"from {n} import ORIGIN as {n}\n" for n in folders)
        + f"ALL = [{', '.join(folders)}]\n")
    code = ("import linarch.api, some_dependency; "
            "print(set(some_dependency.ALL)); print(linarch.api.example_path('deltanet').name)")
    out = run(code, ROOT, PYTHONPATH=str(site))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["{'dependency'}", "deltanet.lin"]


def test_linarch_models_imports_from_the_root_with_the_real_transformers():
    """The failure as users met it, when Hugging Face's `kernels` is installed."""
    pytest.importorskip("kernels")
    out = run("import linarch.models.modeling, transformers.integrations.hub_kernels as h, "
              "kernels; print(kernels.__file__)", ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    # Hugging Face's package, not the project's kernels/ folder (a virtualenv inside the
    # checkout, such as ./.venv, is a fine place for it to live).
    where = out.stdout.strip()
    assert where != "None"  # a namespace package: the project's folder, no __init__.py
    assert not Path(where).resolve().is_relative_to((ROOT / "kernels").resolve())


@pytest.mark.parametrize("argv", [
    ["-m", "linarch", "--help"],
    ["-m", "linarch", "check", "examples/deltanet.lin"],
    *[[str(p.relative_to(ROOT)), "--help"] for p in sorted((ROOT / "benchmarks").glob("bench_*.py"))
      if "argparse" in p.read_text()],
])
def test_entry_points_start_from_the_root(argv):
    out = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]
