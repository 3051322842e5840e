"""Parameter counting and matching the candidate's width to the baseline's count."""

from __future__ import annotations

from dataclasses import replace

import pytest

from linarch.evaluation.mad import MADTask, benchmark_settings
from linarch.evaluation.mqar import MQARSetting
from linarch.evaluation.param_match import count_parameters, match_width, shape_parameters
from linarch.evaluation.problems import MADProblem, ModelShape, MQARProblem
from linarch_testing import mixers as mt


@pytest.fixture(autouse=True)
def _test_mixers():
    with mt.install():
        yield


def mqar(shape: ModelShape) -> MQARProblem:
    return MQARProblem(MQARSetting(vocab_size=1024, seq_len=64, num_kv_pairs=4), shape, 8, 8)


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


class WideLinearAttention(mt.TestLinearAttention):
    """Twice the value width: about 1.5 times the parameters of the test attention."""

    def __init__(self, hidden_size, num_heads, layer_idx=None, **kwargs):
        super().__init__(hidden_size, num_heads, layer_idx, expand_v=2.0)


def test_the_candidate_width_brings_the_counts_together():
    problem = mqar(ModelShape(64, 2, 2, use_mlp=False))
    cand = mt.spec("softmax_attention")
    base = replace(mt.spec("linear_attention"), name="wide", layer_cls=WideLinearAttention)
    own = shape_parameters(problem, cand, problem.shape)
    match = match_width(problem, cand, base)
    assert match.baseline_shape == problem.shape
    assert own.non_embedding < 0.8 * match.baseline_params.non_embedding
    assert match.candidate_shape.hidden_size > 64
    assert match.within_tolerance, match
    rebuilt = shape_parameters(problem, cand, match.candidate_shape)
    assert rebuilt == match.candidate_params
    assert match.relative_difference == pytest.approx(
        match.candidate_params.non_embedding / match.baseline_params.non_embedding - 1)
    # rotary attention needs an even head dimension: widths that fail to run are skipped
    assert (match.candidate_shape.hidden_size // 2) % 2 == 0


def test_blocks_with_an_mlp_are_matched_closely():
    setting = next(s for s in benchmark_settings() if s.task is MADTask.IN_CONTEXT_RECALL)
    problem = MADProblem(setting, ModelShape(64, 2, 2))
    match = match_width(problem, mt.spec("softmax_attention"), mt.spec("linear_attention"))
    assert abs(match.relative_difference) < 0.01
    assert match.candidate_shape.intermediate_size is not None


def test_same_mixer_matches_itself_exactly():
    problem = mqar(ModelShape(64, 2, 2, use_mlp=False))
    spec = mt.spec("linear_attention")
    match = match_width(problem, spec, spec)
    assert match.candidate_shape == match.baseline_shape and match.relative_difference == 0
