"""The hostile corpus and the published mixers: every program keeps its stated outcome.

``tests/corpus/hostile/<category>/*.lin`` are small programs that parse and type-check, written
to break a promise of ``linarch check`` (stability proved where it does not hold, a wrong
class, a broadcast against the time axis, T escaping the length check, constant folding that
never ends, names that break the generated code, programs that check but do not compile,
NaN-producing domains, coupled states, structures with no chunk form). ``tests/corpus/published``
holds mixers from the literature written from their papers (none of them is in examples/).

Each file states its outcome above its header:

    # expect: rejected LA302@21     (these errors, at these lines)
    # expect: accepted              (no error; then it must run: see linarch_testing.probe)
    # warns: LA502                  (the warnings it carries)
    # forms: chunk scan             (each state's form: the chunk algorithm or the token loop)

An accepted program must compile at its defaults, run its chunked form equal to its recurrent
form (outputs, states, gradients; fp64, 1e-9), decode token by token to one forward, pass the
causality probe, and, when proven stable, stay bounded; none may hang (a time limit per
program).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from linarch_testing.probe import probe

CORPUS = Path(__file__).parent / "corpus"
HOSTILE = sorted((CORPUS / "hostile").glob("*/*.lin"))
PUBLISHED = sorted((CORPUS / "published").glob("*.lin"))


def expectation(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        for key in ("expect", "warns", "forms"):
            if line.startswith(f"# {key}:"):
                out[key] = line.split(":", 1)[1].strip()
    return out


def check_outcome(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    want = expectation(text)
    outcome = probe(text, path.name)  # raises ProbeFailure if it runs and misbehaves
    if want["expect"].startswith("rejected"):
        expected = want["expect"].split()[1:]
        assert [f"{c}@{line}" for c, line in outcome.errors] == expected, outcome.diagnostics
        return
    assert want["expect"] == "accepted"
    assert outcome.ran, [d.render() for d in outcome.diagnostics]
    assert sorted(set(outcome.warnings)) == want.get("warns", "").split()
    forms = ["chunk" if c else "scan" for c in outcome.chunked]
    assert forms == want["forms"].split()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", HOSTILE, ids=[f"{p.parent.name}/{p.stem}" for p in HOSTILE])
def test_hostile_program_keeps_its_outcome(path: Path) -> None:
    check_outcome(path)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", PUBLISHED, ids=[p.stem for p in PUBLISHED])
def test_published_mixer_compiles_and_keeps_its_promises(path: Path) -> None:
    """Each published mixer the language covers: accepted, chunked == recurrent, causal."""
    assert expectation(path.read_text(encoding="utf-8"))["expect"] == "accepted"
    check_outcome(path)


def test_the_corpus_covers_every_category() -> None:
    categories = {p.parent.name for p in HOSTILE}
    assert categories == {"stability", "class", "time", "length", "folding", "names",
                          "backend", "domains", "coupling", "structure"}
    assert len(HOSTILE) >= 100
    for category in categories:
        assert sum(p.parent.name == category for p in HOSTILE) >= 5, category
    accepted = [p for p in HOSTILE if expectation(p.read_text())["expect"] == "accepted"]
    assert len(accepted) >= 30 and len(HOSTILE) - len(accepted) >= 30


def test_at_least_fifteen_published_mixers_outside_the_examples() -> None:
    examples = {p.stem for p in (Path(__file__).parent.parent / "examples").glob("*.lin")}
    assert len(PUBLISHED) >= 15
    assert not {p.stem for p in PUBLISHED} & examples


def test_the_mixers_out_of_reach_are_documented() -> None:
    """DeltaFormer, PaTH attention and log-linear attention: docs/language.md says what the
    language means to cover of each, and how."""
    doc = (Path(__file__).parent.parent / "docs" / "language.md").read_text(encoding="utf-8")
    doc = doc.lower()
    for name in ("deltaformer", "path attention", "log-linear attention"):
        assert name in doc, name
