"""linarch.evaluation: score mixers on MQAR, MAD and language modelling, against a baseline.

`run_experiment` trains a candidate and a baseline under one budget (presets quick / standard /
paper) at matched parameter counts over several seeds and returns a typed report with a paired
95% interval and a verdict; `train_main` is the `linarch train` command. lm-evaluation-harness
support lives in `linarch.evaluation.lm_eval_model` (imported on demand: it needs lm_eval).
"""

from .cli import train_main
from .experiment import ExperimentReport, RoleRun, SeedScore, run_experiment
from .mad import MADSetting, MADTask, benchmark_settings, generate_mad, macro_accuracy
from .mixers import (
    MixerSpec,
    load_mixer,
    mixer_from_dsl,
    set_mixer_loader,
    use_mixer_loader,
)
from .mqar import MQARSetting, generate_mqar, query_accuracy
from .param_match import MatchResult, ParamCount, count_parameters, match_width
from .presets import Budget, Preset, TaskKind, budget_for
from .problems import LMProblem, MADProblem, ModelShape, MQARProblem, Problem
from .results import Curves, Metric, Outcome, Timings, TrainResult
from .stats import PairedComparison, Verdict, paired_comparison
from .store import ExperimentRecord, ExperimentStore, RunRecord
from .text_data import TextSource, TokenCorpus, load_corpus
from .tokenizer import byte_tokenizer, load_tokenizer
from .trainer import TrainConfig, train_model, train_problem

__all__ = [
    "Budget",
    "Curves",
    "ExperimentRecord",
    "ExperimentReport",
    "ExperimentStore",
    "LMProblem",
    "MADProblem",
    "MADSetting",
    "MADTask",
    "MQARProblem",
    "MQARSetting",
    "MatchResult",
    "Metric",
    "MixerSpec",
    "ModelShape",
    "Outcome",
    "PairedComparison",
    "ParamCount",
    "Preset",
    "Problem",
    "RoleRun",
    "RunRecord",
    "SeedScore",
    "TaskKind",
    "TextSource",
    "Timings",
    "TokenCorpus",
    "TrainConfig",
    "TrainResult",
    "Verdict",
    "benchmark_settings",
    "budget_for",
    "byte_tokenizer",
    "count_parameters",
    "generate_mad",
    "generate_mqar",
    "load_corpus",
    "load_mixer",
    "load_tokenizer",
    "macro_accuracy",
    "match_width",
    "mixer_from_dsl",
    "paired_comparison",
    "query_accuracy",
    "run_experiment",
    "set_mixer_loader",
    "train_main",
    "train_model",
    "train_problem",
    "use_mixer_loader",
]
