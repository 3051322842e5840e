"""The offline proposer: valid mutations and crossovers, determinism, best-of-N ablation mode,
and never an exception into the loop."""

from dataclasses import replace
from types import SimpleNamespace

import linarch
from linarch.api import EXAMPLES
from linarch.search.config import IslandConfig, RunConfig, SearchConfig
from linarch.search.offline import OfflineProposer, build_offline_proposer
from linarch.search.proposer import ProposalRequest, Proposer
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


def _req(parents, inspirations=(), index=1):
    return ProposalRequest(f"c{index:04d}", index, tuple(parents), tuple(inspirations))


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
    proposer = OfflineProposer(seed=1, crossover_rate=0.4, recombine_rate=0.3)
    motivations = []
    for i in range(16):
        p = proposer.propose(_req([SEED], [GATED, FUSION], index=i + 1))
        _assert_proposal_valid(p, SEED.profile.structural_hash)
        motivations.append(p.motivation)
    crossed = [m for m in motivations if "(crossover with c000" in m]
    recombined = [m for m in motivations if "(recombination with c000" in m]
    assert crossed and recombined and len(crossed) + len(recombined) < len(motivations)


def test_deterministic_in_seed_and_candidate_index():
    """What a proposal is depends on the run's seed and the candidate's index, not on how
    many proposals this object made before: a resumed run (a new proposer) asked for c0003
    proposes what the killed one would have."""
    def run(seed: int, indices) -> list[str | None]:
        proposer = OfflineProposer(seed=seed, crossover_rate=0.3)
        return [proposer.propose(_req([p], [GATED], index=i)).source
                for p, i in zip((SEED, FUSION, SEED, GATED), indices)]

    assert run(4, (1, 2, 3, 4)) == run(4, (1, 2, 3, 4))
    assert run(4, (1, 2, 3, 4)) != run(5, (1, 2, 3, 4))
    resumed = OfflineProposer(seed=4, crossover_rate=0.3)
    assert resumed.propose(_req([SEED], [GATED], index=3)).source == run(4, (1, 2, 3, 4))[2]
    assert len(set(run(4, (1, 2, 3, 4)))) == 4


def test_ablation_mode_only_mutates_the_seed():
    """Whatever parents and inspirations it is handed, best-of-N mutates the seed program:
    the same proposals as a proposer handed the seed every time, and never a crossover."""
    mixed = OfflineProposer(seed=3, crossover_rate=0.9, ablation_seed_only=True)
    seed_only = OfflineProposer(seed=3, crossover_rate=0.9, ablation_seed_only=True)
    for i, parent in enumerate((SEED, GATED, FUSION, GATED, FUSION, SEED)):
        p = mixed.propose(_req([parent], [GATED, FUSION], index=i + 1))
        q = seed_only.propose(_req([SEED], index=i + 1))
        assert p.source == q.source
        _assert_proposal_valid(p, SEED.profile.structural_hash)
        assert "a mutation of the seed s000" in p.motivation
        assert "crossover" not in p.motivation


def test_ablation_without_a_seed_origin_keeps_the_first_parent():
    proposer = OfflineProposer(seed=0, ablation_seed_only=True)
    first = proposer.propose(_req([GATED], index=1))
    later = proposer.propose(_req([FUSION], index=2))
    assert "seed c0001" in first.motivation and "seed c0001" in later.motivation
    _assert_proposal_valid(later, GATED.profile.structural_hash)


def test_crossover_falls_back_to_a_mutation():
    """An inspiration with the parent's own program cannot be crossed: the proposer mutates."""
    proposer = OfflineProposer(seed=0, crossover_rate=0.5, recombine_rate=0.5)
    twin = replace(SEED, id="c0009", origin="mutation")
    p = proposer.propose(_req([SEED], [twin]))
    _assert_proposal_valid(p, SEED.profile.structural_hash)
    assert "crossover" not in p.motivation


def test_never_raises():
    proposer = OfflineProposer(seed=0)
    none = proposer.propose(_req([]))
    assert none.source is None and none.failure == "invalid"
    broken = replace(SEED, source="mixer Broken(hidden_size = 8:\n    return x\n")
    p = proposer.propose(_req([broken]))
    assert p.source is None and p.failure == "invalid" and "syntax" in p.motivation


def test_factory_reads_the_run_seed_and_selection():
    config = SearchConfig(run=RunConfig(seed=7), islands=IslandConfig(selection="seeds"))
    proposer = build_offline_proposer(SimpleNamespace(config=config))
    assert proposer.seed == 7 and proposer.ablation_seed_only
    assert not build_offline_proposer(SimpleNamespace(config=SearchConfig(),
                                                                  frontend=None)).ablation_seed_only
