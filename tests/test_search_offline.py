"""The offline proposer: valid mutations and crossovers, determinism, best-of-N ablation mode,
and never an exception into the loop."""

from dataclasses import replace
from types import SimpleNamespace

import linarch
from linarch.api import EXAMPLES
from linarch.search.config import IslandConfig, RunConfig, SearchConfig
from linarch.search.offline import OfflineProposer, build_offline_proposer
from linarch.search.proposer import Proposer
from linarch.search.records import Candidate, Profile

FOLDER = EXAMPLES


def _source(name: str) -> str:
    return (FOLDER / f"{name}.lin").read_text()


def _candidate(cid: str, source: str, origin: str = "mutation") -> Candidate:
    a = linarch.analyze(source)
    profile = Profile(a.name, a.structural_hash, int(a.flops_per_token), int(a.state_bytes),
                      a.transition_classes, a.num_paths)
    return Candidate(id=cid, source=source, motivation="", parent_ids=(), island=0,
                     generation=0, origin=origin, profile=profile, result=None, stages_passed=0)


SEED = _candidate("s000", _source("deltanet"), origin="seed")
GATED = _candidate("c0001", _source("gated_deltanet"))
FUSION = _candidate("c0002", _source("fusion_gated_fir"))


def _assert_proposal_valid(p, parent_hash: str) -> None:
    assert p.failure is None and p.source is not None, p.motivation
    assert p.origin == "mutation" and p.motivation
    assert not [d for d in linarch.check(p.source) if d.is_error]
    assert linarch.analyze(p.source).structural_hash != parent_hash


def test_is_a_proposer():
    assert isinstance(OfflineProposer(0), Proposer)


def test_proposals_are_valid_mutations_and_crossovers():
    proposer = OfflineProposer(seed=1, crossover_rate=0.5)
    motivations = []
    for _ in range(16):
        p = proposer.propose([SEED], [GATED, FUSION], [])
        _assert_proposal_valid(p, SEED.profile.structural_hash)
        motivations.append(p.motivation)
    crossed = [m for m in motivations if "(crossover with c000" in m]
    assert 0 < len(crossed) < len(motivations)


def test_deterministic_in_seed_and_call_count():
    def run(seed: int) -> list[str | None]:
        proposer = OfflineProposer(seed=seed, crossover_rate=0.3)
        return [proposer.propose([p], [GATED], []).source for p in (SEED, FUSION, SEED, GATED)]

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_ablation_mode_only_mutates_the_seed():
    """Whatever parents and inspirations it is handed, best-of-N mutates the seed program:
    the same proposals as a proposer handed the seed every time, and never a crossover."""
    mixed = OfflineProposer(seed=3, crossover_rate=1.0, ablation_seed_only=True)
    seed_only = OfflineProposer(seed=3, crossover_rate=1.0, ablation_seed_only=True)
    for parent in (SEED, GATED, FUSION, GATED, FUSION, SEED):
        p = mixed.propose([parent], [GATED, FUSION], [])
        q = seed_only.propose([SEED], [], [])
        assert p.source == q.source
        _assert_proposal_valid(p, SEED.profile.structural_hash)
        assert "a mutation of the seed s000" in p.motivation
        assert "crossover" not in p.motivation


def test_ablation_without_a_seed_origin_keeps_the_first_parent():
    proposer = OfflineProposer(seed=0, ablation_seed_only=True)
    first = proposer.propose([GATED], [], [])
    later = proposer.propose([FUSION], [], [])
    assert "seed c0001" in first.motivation and "seed c0001" in later.motivation
    _assert_proposal_valid(later, GATED.profile.structural_hash)


def test_crossover_falls_back_to_a_mutation():
    """An inspiration with the parent's own program cannot be crossed: the proposer mutates."""
    proposer = OfflineProposer(seed=0, crossover_rate=1.0)
    twin = replace(SEED, id="c0009", origin="mutation")
    p = proposer.propose([SEED], [twin], [])
    _assert_proposal_valid(p, SEED.profile.structural_hash)
    assert "crossover" not in p.motivation


def test_never_raises():
    proposer = OfflineProposer(seed=0)
    none = proposer.propose([], [], [])
    assert none.source is None and none.failure == "invalid"
    broken = replace(SEED, source="mixer Broken(hidden_size = 8:\n    return x\n")
    p = proposer.propose([broken], [], [])
    assert p.source is None and p.failure == "invalid" and "syntax" in p.motivation
    assert proposer.calls == 2


def test_factory_reads_the_run_seed_and_selection():
    config = SearchConfig(run=RunConfig(seed=7), islands=IslandConfig(selection="seeds"))
    proposer = build_offline_proposer(SimpleNamespace(config=config))
    assert proposer.seed == 7 and proposer.ablation_seed_only
    assert not build_offline_proposer(SimpleNamespace(config=SearchConfig())).ablation_seed_only
