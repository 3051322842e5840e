"""The mutation engine: every operator on every example, determinism, chains and crossover.

The oracle is the front end itself: a mutated program must check clean, hash differently from
its parent, survive `fmt` unchanged, and show the effect its operator claims in the compiler's
own analysis (transition classes, number of paths, parameter count).
"""

import functools
import json
import os
import random
import subprocess
import sys

import pytest

import linarch
from linarch.api import EXAMPLES as FOLDER
from linarch.dsl import mutate as engine
from linarch.dsl.mutate_ops import OPERATORS

EXAMPLES = {p.stem: p.read_text() for p in sorted(FOLDER.glob("*.lin"))}


def _classes(a: linarch.Analysis) -> str:
    return " ".join(a.transition_classes)


def _same_kind(a: linarch.Analysis, b: linarch.Analysis) -> bool:
    return a.transition_classes == b.transition_classes and a.num_paths == b.num_paths


# what each operator must do, as the compiler sees it (before, after) -> bool
EFFECTS = {
    "add_scalar_gate": lambda a, b: "scalar" not in _classes(a) and "scalar" in _classes(b),
    "switch_gate_form": _same_kind,
    "scalar_to_channel_gate": lambda a, b: "scalar" in _classes(a)
    and "diagonal" in _classes(b) and "scalar" not in _classes(b),
    "channel_to_scalar_gate": lambda a, b: "diagonal" in _classes(a)
    and "scalar" in _classes(b) and "diagonal" not in _classes(b),
    "add_delta_rule": lambda a, b: "delta" not in _classes(a) and "delta" in _classes(b),
    "remove_delta_rule": lambda a, b: a.transition_classes != b.transition_classes,
    "toggle_delta_rate": _same_kind,
    "toggle_negative_eigenvalues": _same_kind,
    "add_fir_paths": lambda a, b: (a.num_paths, b.num_paths) == (1, 3),
    "add_path": lambda a, b: b.num_paths == a.num_paths + 1 and b.params > a.params,
    "remove_path": lambda a, b: b.num_paths == a.num_paths - 1 and b.params < a.params,
    "swap_router": lambda a, b: _same_kind(a, b) and a.params == b.params,
    "change_conv_width": lambda a, b: _same_kind(a, b) and a.params != b.params,
    "swap_feature_activation": lambda a, b: _same_kind(a, b) and a.params == b.params,
    "toggle_key_l2norm": lambda a, b: _same_kind(a, b) and a.params == b.params,
    "swap_output_norm": lambda a, b: _same_kind(a, b) and a.params != b.params,
    "swap_output_gate": lambda a, b: _same_kind(a, b) and a.params == b.params,
    "add_output_gate": lambda a, b: _same_kind(a, b) and b.params > a.params,
    "add_short_conv": lambda a, b: _same_kind(a, b) and b.params > a.params,
    "remove_short_conv": lambda a, b: _same_kind(a, b) and b.params < a.params,
    "tune_constant": lambda a, b: _same_kind(a, b) and a.params == b.params,
    "tune_hparam": _same_kind,
    "add_householder_step": lambda a, b: "2 householders" in _classes(b)
    and "householder" not in _classes(a) and b.params > a.params,
    "remove_householder_step": lambda a, b: "householders" in _classes(a)
    and "householders" not in _classes(b),
    "add_second_state": lambda a, b: len(b.transition_classes) == len(a.transition_classes) + 1
    and b.params > a.params,
}


def _assert_valid(text: str) -> linarch.Analysis:
    """The analysis of a program that checks clean (`analyze` raises on any error)."""
    try:
        return linarch.analyze(text)
    except linarch.LinarchError as err:
        pytest.fail(f"{err}\n{text}")


@functools.cache
def _parent(name: str) -> linarch.Analysis:
    return linarch.analyze(EXAMPLES[name])


def test_every_operator_has_a_stated_effect():
    assert set(EFFECTS) == set(OPERATORS)


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_operator_on_every_example(operator):
    applied = []
    for name, text in EXAMPLES.items():
        parent = _parent(name)
        program = engine.parse_program(text)
        for seed in (0, 1):
            out = engine.apply(operator, program, random.Random(seed))
            if out is None:
                break  # not applicable here: no randomness makes it applicable
            source, description = out
            child = _assert_valid(source)
            assert child.structural_hash != parent.structural_hash, (name, description)
            assert linarch.format_source(source) == source, name
            assert EFFECTS[operator](parent, child), (name, description, child.transition_classes)
            assert description.endswith(".") and "\n" not in description
            applied.append(name)
    assert applied, f"{operator} applies to no example"


def test_operators_cover_the_families_on_the_examples():
    """Each example has several applicable operators, so a search from any seed can move."""
    for name, text in EXAMPLES.items():
        view = engine.View(engine.parse_program(text))
        usable = [op for op, f in OPERATORS.items() if f(view, random.Random(0)) is not None]
        assert len(usable) >= 3, (name, usable)


def test_mutate_is_deterministic_and_varied():
    text = EXAMPLES["gated_deltanet"]
    first = [engine.mutate(text, seed) for seed in range(8)]
    assert first == [engine.mutate(text, seed) for seed in range(8)]
    assert len({m.source for m in first}) >= 5
    assert all(m.source != text and m.tries >= 1 for m in first)


_CHILD = """
import json, sys
from linarch.dsl.mutate import crossover, mutate
a, b = open(sys.argv[1]).read(), open(sys.argv[2]).read()
print(json.dumps([mutate(a, s).source for s in range(4)] + [crossover(a, b, 7).source]))
"""


def test_mutate_does_not_depend_on_the_hash_seed():
    """The proposer replays after a resume in a new process: string hashing must not matter."""
    folder = FOLDER
    paths = [folder / "fusion_gated_fir.lin", folder / "gated_deltanet.lin"]
    a, b = (p.read_text() for p in paths)
    here = [engine.mutate(a, s).source for s in range(4)] + [engine.crossover(a, b, 7).source]
    hash_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    run = subprocess.run([sys.executable, "-c", _CHILD, *map(str, paths)], env=env, check=True,
                         capture_output=True, text=True, timeout=120)
    assert json.loads(run.stdout) == here


def test_random_chains_of_three_stay_valid():
    rng = random.Random(0)
    names = sorted(EXAMPLES)
    used = set()
    tries = []
    for c in range(200):
        text = EXAMPLES[names[c % len(names)]]
        for _ in range(3):
            m = engine.mutate(text, rng.getrandbits(32))
            errors = [d.render() for d in linarch.check(m.source) if d.is_error]
            assert not errors, (m.operators, errors, m.source)
            assert m.source != text
            used.update(m.operators)
            tries.append(m.tries)
            text = m.source
    assert used == set(OPERATORS)
    assert sum(tries) / len(tries) < 1.5  # acceptance: almost every applied edit checks clean


def test_mutation_changes_the_hash_or_a_default():
    for name, text in EXAMPLES.items():
        before = _parent(name).structural_hash
        m = engine.mutate(text, 11)
        assert linarch.analyze(m.source).structural_hash != before, (name, m.description)


def test_fresh_names_never_collide():
    """New bindings and weights never reuse a name, nor the prefix of a dotted one."""
    text = EXAMPLES["deltanet"].replace("beta", "g").replace("b_proj", "gk_proj")
    _assert_valid(text)
    for seed in range(6):
        source, _ = engine.apply("add_scalar_gate", engine.parse_program(text),
                                 random.Random(seed))
        _assert_valid(source)
        assert "\n    g = sigmoid(gk_proj(x))" in source  # the old binding is untouched
        assert "    g_2 = " in source
        assert "logsigmoid" not in source or "gk_proj_2(x)" in source
    # GLA owns gk_proj.0 and gk_proj.1: a new per-head gate projection is not `gk_proj`
    for seed in range(4):
        source, _ = engine.apply("channel_to_scalar_gate", engine.parse_program(EXAMPLES["gla"]),
                                 random.Random(seed))
        assert "gk_proj :" not in source and "gk_proj(x)" not in source


def test_prune_drops_what_nothing_reads():
    text = EXAMPLES["gated_deltanet"]
    out = engine.apply("remove_delta_rule", engine.parse_program(text), random.Random(0))
    source, _ = out
    assert "beta =" not in source and "b_proj" not in source
    assert "a_proj : linear(hidden_size -> H)" in source  # split from `a_proj, b_proj : ...`


def test_mutate_raises_when_nothing_applies():
    with pytest.raises(engine.MutationError):
        engine.mutate(EXAMPLES["deltanet"], 0, operators=["swap_router"])
    with pytest.raises(engine.MutationError):
        engine.mutate("mixer Broken(hidden_size = 8:\n    return x\n", 0)


def test_crossover_of_deltanet_and_gated_deltanet():
    a, b = EXAMPLES["deltanet"], EXAMPLES["gated_deltanet"]
    hashes = {linarch.analyze(a).structural_hash, linarch.analyze(b).structural_hash}
    seen = set()
    for seed in range(8):
        for x, y in ((a, b), (b, a)):
            m = engine.crossover(x, y, seed)
            child = _assert_valid(m.source)
            assert child.structural_hash not in hashes
            assert linarch.format_source(m.source) == m.source
            assert m.operators == ("crossover",)
            seen.add(m.description.split(":")[0])
    assert len(seen) >= 3  # several different definitions were taken
    # the gated update moves into DeltaNet with its gate and the gate's weights
    m = next(m for s in range(20) if "Take `S`" in (m := engine.crossover(a, b, s)).description)
    child = linarch.analyze(m.source)
    assert child.transition_classes == ("delta (scalar gate)",)
    assert "A_log : weight(H, init = \"a_log\")" in m.source


def test_public_api():
    m = linarch.api.mutate(EXAMPLES["deltanet"], 3)
    assert isinstance(m, linarch.api.Mutation) and m.operators[0] in OPERATORS
    c = linarch.api.crossover(EXAMPLES["gla"], EXAMPLES["kda"], 1)
    assert c.operators == ("crossover",)
    with pytest.raises(linarch.api.MutationError):
        linarch.api.crossover(EXAMPLES["deltanet"], EXAMPLES["deltanet"], 0)


def test_recombination_adds_the_donor_state_as_a_second_memory():
    """Gated DeltaNet's gated delta state beside GLA's diagonal-decay state: both transition
    classes in one program, the donor's weights its own, the readouts added."""
    a, b = EXAMPLES["gla"], EXAMPLES["gated_deltanet"]
    seen = set()
    for seed in range(4):
        m = engine.recombine(a, b, seed)
        child = _assert_valid(m.source)
        assert m.operators == ("recombine",) and linarch.format_source(m.source) == m.source
        assert len(child.transition_classes) == 2
        assert set(_parent("gla").transition_classes) <= set(child.transition_classes)
        assert child.params > _parent("gla").params
        seen.add(child.structural_hash)
    assert "delta (scalar gate)" in child.transition_classes
    with pytest.raises(engine.MutationError):
        engine.recombine(a, "mixer NoState(hidden_size = 8):\n    return x\n", 0)


def test_chains_of_mutation_crossover_and_recombination_stay_valid():
    """Every move the offline proposer makes, chained the way a search chains them: each
    result passes linarch.check and is a new program."""
    rng = random.Random(1)
    names = sorted(EXAMPLES)
    kinds = []
    for c in range(24):
        text = EXAMPLES[names[c % len(names)]]
        for _ in range(3):
            donor = EXAMPLES[rng.choice(names)]
            kind = rng.choice(("mutate", "crossover", "recombine"))
            try:
                if kind == "mutate":
                    m = engine.mutate(text, rng.getrandbits(32))
                elif kind == "crossover":
                    m = engine.crossover(text, donor, rng.getrandbits(32))
                else:
                    m = engine.recombine(text, donor, rng.getrandbits(32))
            except engine.MutationError:
                continue
            errors = [d.render() for d in linarch.check(m.source) if d.is_error]
            assert not errors, (kind, m.description, errors)
            assert m.source != text
            kinds.append(kind)
            text = m.source
    assert set(kinds) == {"mutate", "crossover", "recombine"}


def test_a_move_never_loses_a_proven_range():
    """A rate bound of 2 tuned to 3 would leave [0, 2]: the engine refuses it (LA502)."""
    text = EXAMPLES["deltaproduct"]
    warned = [d.code for d in linarch.check(text) if d.code.startswith("LA5")]
    for seed in range(12):
        m = engine.mutate(text, seed, operators=["tune_constant", "tune_hparam"])
        codes = {d.code for d in linarch.check(m.source) if d.code.startswith("LA5")}
        assert codes <= set(warned), (m.description, codes)
