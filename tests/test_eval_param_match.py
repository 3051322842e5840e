"""Parameter counting, state size, and matching the candidate's own width to the baseline."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from linarch.evaluation.mad import MADTask, benchmark_settings
from linarch.evaluation.mqar import MQARSetting
from linarch.evaluation.param_match import (
    MatchError,
    MatchTarget,
    count_parameters,
    match_width,
    measure,
    width_knobs,
)
from linarch.evaluation.problems import MADProblem, ModelShape, MQARProblem
from linarch_testing import mixers as mt

HYBRID = ("base_conv", "mixer")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _test_mixers():
    with mt.install():
        yield


def mqar(shape: ModelShape, seq: int = 64) -> MQARProblem:
    return MQARProblem(MQARSetting(vocab_size=1024, seq_len=64, num_kv_pairs=4), shape, 8, 8,
                       tests=(MQARSetting(vocab_size=1024, seq_len=seq, num_kv_pairs=8),))


def test_counts_tied_weights_once_and_split_off_the_vocabulary():
    problem = mqar(ModelShape(64, 2, 2, use_mlp=False))
    model = problem.build_model(mt.spec("linear_attention"), problem.shape)
    count = count_parameters(model)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert count.total == sum(unique.values())
    assert count.total - count.non_embedding == 1024 * 64  # one tied embedding matrix
    untied = problem.build_model(mt.spec("linear_attention"),
                                 replace(problem.shape, tie_embeddings=False))
    assert count_parameters(untied).total - count_parameters(untied).non_embedding == 2 * 65536
    assert count_parameters(untied).non_embedding == count.non_embedding


def test_state_is_what_the_mixer_layers_keep_per_sequence():
    """Linear attention: a [H, dk, dv] state and three conv windows of 3 steps; attention: its
    KV cache, which grows with the length. The shared BaseConv's window is not counted."""
    shape = ModelShape(64, 2, 2, use_mlp=False, block_kinds=HYBRID)
    lin = measure(mqar(shape), mt.spec("linear_attention"), shape)
    assert lin.state_bytes == 4 * (2 * 32 * 32 + 3 * 3 * 64)
    short = measure(mqar(shape, seq=64), mt.spec("softmax_attention"), shape)
    long = measure(mqar(shape, seq=128), mt.spec("softmax_attention"), shape)
    assert short.state_bytes == 4 * 2 * 64 * 64  # keys and values at the longest test
    assert long.state_bytes == 2 * short.state_bytes


class WideLinearAttention(mt.TestLinearAttention):
    """Twice the value width: about 1.5 times the parameters of the test attention."""

    def __init__(self, hidden_size, num_heads, layer_idx=None, **kwargs):
        super().__init__(hidden_size, num_heads, layer_idx, expand_v=2.0)


def test_the_candidates_own_width_closes_the_gap_not_the_residual_stream():
    problem = mqar(ModelShape(64, 2, 2, use_mlp=False, block_kinds=HYBRID))
    base = replace(mt.spec("linear_attention"), name="wide", layer_cls=WideLinearAttention)
    cand = mt.spec("linear_attention")
    assert width_knobs(cand, problem.shape) == {"expand_v": 1.0}
    match = match_width(problem, cand, base)
    assert match.candidate_shape.hidden_size == match.baseline_shape.hidden_size == 64
    assert match.knobs == ("expand_v",)
    assert dict(match.candidate_shape.mixer_kwargs)["expand_v"] > 1.5
    assert match.within_tolerance and abs(match.relative_difference) < 0.02, match
    assert measure(problem, cand, match.candidate_shape).params == match.candidate_params


def test_state_matching_moves_the_state_instead():
    problem = mqar(ModelShape(64, 2, 2, use_mlp=False, block_kinds=HYBRID))
    base = replace(mt.spec("linear_attention"), name="wide", layer_cls=WideLinearAttention)
    match = match_width(problem, mt.spec("linear_attention"), base, target=MatchTarget.STATE)
    assert match.target is MatchTarget.STATE and abs(match.state_difference) <= 0.05
    assert match.relative_difference == match.state_difference


def test_no_matching_keeps_the_declared_width_and_reports_the_gap():
    problem = mqar(ModelShape(64, 2, 2, use_mlp=False, block_kinds=HYBRID))
    base = replace(mt.spec("linear_attention"), name="wide", layer_cls=WideLinearAttention)
    match = match_width(problem, mt.spec("softmax_attention"), base, target=MatchTarget.NONE)
    assert match.candidate_shape == problem.shape and match.within_tolerance
    assert match.params_difference < -0.1


def test_a_published_configuration_sets_the_candidates_own_keywords_when_nothing_is_matched():
    from linarch.evaluation.mixers import mixer_from_dsl

    problem = mqar(ModelShape(64, 2, 2, use_mlp=False, block_kinds=HYBRID))
    mamba2 = mixer_from_dsl(ROOT / "examples" / "mamba2.lin")
    declared = match_width(problem, mamba2, mamba2, target=MatchTarget.NONE)
    zoology = match_width(problem, mamba2, mamba2, target=MatchTarget.NONE,
                          widths={"state_size": 16})
    assert dict(zoology.candidate_shape.mixer_kwargs) == {"state_size": 16}
    assert zoology.baseline_shape == problem.shape  # the baseline keeps its declared width
    assert zoology.candidate.state_bytes < declared.candidate.state_bytes / 4
    with pytest.raises(MatchError, match="use match 'none'"):
        match_width(problem, mamba2, mamba2, widths={"state_size": 16})


def test_a_mixer_without_width_keywords_out_of_tolerance_is_refused_with_the_fix():
    problem = mqar(ModelShape(64, 2, 2, use_mlp=False, block_kinds=HYBRID))
    base = replace(mt.spec("linear_attention"), name="wide", layer_cls=WideLinearAttention)
    with pytest.raises(MatchError, match="no width keyword|none of the width keywords") as err:
        match_width(problem, mt.spec("softmax_attention"), base)
    assert "--tolerance" in str(err.value) and "head_dim" in str(err.value)
    wide = match_width(problem, mt.spec("softmax_attention"), base, tolerance=0.6)
    assert wide.knobs == () and wide.within_tolerance


def test_blocks_with_an_mlp_keep_the_shared_mlp():
    setting = next(s for s in benchmark_settings() if s.task is MADTask.IN_CONTEXT_RECALL)
    problem = MADProblem(setting, ModelShape(64, 2, 2))
    base = replace(mt.spec("linear_attention"), name="wide", layer_cls=WideLinearAttention)
    match = match_width(problem, mt.spec("linear_attention"), base)
    assert match.candidate_shape.intermediate_size == match.baseline_shape.intermediate_size
    assert abs(match.relative_difference) < 0.02


def test_same_mixer_matches_itself_exactly():
    problem = mqar(ModelShape(64, 2, 2, use_mlp=False))
    spec = mt.spec("linear_attention")
    match = match_width(problem, spec, spec)
    assert match.candidate_shape == match.baseline_shape and match.relative_difference == 0
