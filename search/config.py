"""The TOML configuration of a search run, parsed into frozen dataclasses.

Unknown keys are errors (a typo such as `budget_us` must not silently mean "no budget"), and
every section has defaults that run a small local search. Example:

    [run]
    max_candidates = 40
    preset = "proxy"
    seeds = [0, 1, 2]
    seed_programs = ["example:deltanet", "my_mixers/fir_router.lin"]
    baseline = "example:deltanet"           # the score's zero (the default)

    [llm]
    base_url = "http://127.0.0.1:8000/v1"
    api_key_env = "OPENAI_API_KEY"
    budget_usd = 2.0
    temperature = 0.7                       # optional: not sent unless set
    [llm.models]
    default = "gpt-4o-mini"
    researcher = ["gpt-4o-mini", "o3-mini"] # several: a bandit chooses by the children's scores
    analyzer = "gpt-4o"
    [llm.options.o3-mini]                   # this model's own options: no temperature
    max_completion_tokens = 8000
    [llm.prices.gpt-4o-mini]
    input_per_1k = 0.00015
    output_per_1k = 0.0006
    [llm.prices.gpt-4o]
    input_per_1k = 0.0025
    output_per_1k = 0.01
    [llm.prices.o3-mini]
    input_per_1k = 0.0011
    output_per_1k = 0.0044

    [[cascade]]
    stage = "static"
    [[cascade]]
    stage = "mqar"
    min_score = -0.2
    [[cascade]]
    stage = "mad"

    [islands]
    count = 2
    selection = "weighted"

    [executor]
    kind = "local"
    workers = 2
    time_limit_s = 900
    memory_limit_mb = 6000
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linarch.search.ledger import Price


class ConfigError(ValueError):
    """The configuration names an unknown key or holds a value of the wrong kind."""


@dataclass(frozen=True)
class RunConfig:
    name: str = "search"
    seed: int = 0
    # candidates evaluated, not counting seed programs; a proposal rejected before training
    # (a duplicate, an invalid program) is free, up to max_proposals attempts in all
    max_candidates: int = 20
    max_proposals: int = 0  # 0: 3 x max_candidates
    # proposals (and analyses) prepared in threads while the workers evaluate; 0: in the loop
    proposal_workers: int = 2
    preset: str = "proxy"  # evaluation preset (linarch.evaluation.presets.Preset), for `evaluate`
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds per evaluation
    # evaluated first, the baseline first: paths (relative to the config file) or "example:NAME"
    seed_programs: tuple[str, ...] = ("example:deltanet",)
    # what every candidate is compared with (the score's zero): a path (relative to the config
    # file) or "example:NAME"; copied into RUN/baseline.lin when the run is created
    baseline: str = "example:deltanet"
    store: str = ""  # SQLite store shared with linarch.evaluation; "" = RUN/store.sqlite


@dataclass(frozen=True)
class Sampling:
    """Request options sent with every call (None: not sent, the endpoint's default).
    Reasoning models refuse `temperature` and `max_tokens`; they take
    `max_completion_tokens`."""

    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None

    def request_options(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class LLMConfig:
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"  # "" for local endpoints that need no key
    # a model per role (researcher, engineer, analyzer, default); a list of models makes the
    # loop choose among them for that role with a bandit rewarded by the children's scores
    models: Mapping[str, str | tuple[str, ...]] = field(
        default_factory=lambda: {"default": "gpt-4o-mini"})
    prices: Mapping[str, Price] = field(default_factory=dict)
    budget_usd: float | None = None
    timeout_s: float = 120.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    options: Mapping[str, Sampling] = field(default_factory=dict)  # [llm.options.MODEL]
    # the language reference given to the roles: "" = the condensed reference shipped with
    # linarch (search/prompts/language_reference.md); a path is relative to the config file
    language_reference: str = ""
    max_consecutive_rejections: int = 5  # refused requests (4xx) in a row before the run stops

    def models_for(self, role: str) -> tuple[str, ...]:
        value = self.models.get(role, self.models.get("default"))
        if value is None:
            raise ConfigError(f"no model for role {role!r} and no default in [llm.models]")
        return (value,) if isinstance(value, str) else tuple(value)

    def model_for(self, role: str) -> str:
        return self.models_for(role)[0]

    def all_models(self) -> set[str]:
        return {m for v in self.models.values() for m in ((v,) if isinstance(v, str) else v)}

    def sampling_for(self, model: str) -> dict[str, Any]:
        """The request options for `model`: its own [llm.options.MODEL] table when it has one
        (whole: what it leaves out is not sent, so a reasoning model gets no temperature),
        else the [llm] ones."""
        own = self.options.get(model)
        if own is None:
            own = Sampling(self.temperature, self.max_tokens, self.max_completion_tokens)
        return own.request_options()


@dataclass(frozen=True)
class EngineerConfig:
    max_repairs: int = 3  # compile repairs of one proposal, from the compiler's diagnostics
    # repairs of a candidate that failed in a worker (codegen, numerics, NaN, timeout), from
    # its log tail; each is a new candidate (LLM proposers only)
    max_runtime_repairs: int = 1


@dataclass(frozen=True)
class MemoryConfig:
    entries: int = 5  # memory entries retrieved per proposal
    analyze: bool = True  # run the analyzer (one LLM call per evaluated candidate)
    siblings: int = 4  # earlier children of the parent whose outcomes the researcher sees


@dataclass(frozen=True)
class CascadeStage:
    stage: str  # with the built-in evaluate: a linarch.search.evaluate.Stage value
    min_score: float | None = None  # go on to the next stage only if score >= min_score


SELECTIONS = ("weighted", "rank", "ucb", "seeds")


@dataclass(frozen=True)
class IslandConfig:
    count: int = 2
    # "weighted" (sigmoid of the lower bound x offspring penalty) | "rank" (power law x
    # offspring penalty) | "ucb" (the old child-beats-parent rule) | "seeds" (best-of-N)
    selection: str = "weighted"
    weight_lambda: float = 10.0  # the weighted rule's pressure, per interquartile range
    selection_z: float = 1.0  # its fitness: mean - z standard errors
    ucb_c: float = 1.0
    rank_exponent: float = 1.0
    inspirations: int = 2
    migration_interval: int = 8  # evaluations between migrations; 0 = never
    migration_count: int = 1
    # WL similarity at or above which a candidate is rejected; 1.0 = the same graph up to the
    # model width (hidden_size), which the evaluation sets itself
    near_duplicate: float = 1.0
    wl_iterations: int = 1
    # relative distance of behavioural fingerprints at or below which two programs compute the
    # same function (a rewrite)
    behaviour_tolerance: float = 1e-6
    novelty_retries: int = 2  # proposals from the same parent after a duplicate, with feedback


@dataclass(frozen=True)
class RacingConfig:
    """More seeds for the candidates still in the race (docs/search.md, racing). A candidate
    whose interval still reaches the leader's lower bound gets `step` more seeds, taken in
    order from run.seeds then `seeds` (the same pool for every candidate, so DeltaNet's runs
    on them are trained once and read from the run cache after), up to `max_seeds`."""

    enabled: bool = True
    seeds: tuple[int, ...] = (3, 4, 5, 6, 7)  # selection seeds after run.seeds, in order
    step: int = 2
    max_seeds: int = 8
    # the racing intervals: mean -+ z standard errors; 0 = the 95% t intervals (docs/search.md
    # measures both: the t intervals of 3 seeds keep nearly every candidate in the race)
    z: float = 1.0


@dataclass(frozen=True)
class ConfirmConfig:
    """The final stage: the `top` candidates again on `seeds` never used for selection, one
    one-sided paired t-test each, Holm's correction over the `top` tests at `alpha`. Only a
    candidate it confirms is reported BETTER."""

    top: int = 3  # 0: no confirmation stage
    seeds: tuple[int, ...] = (1000, 1001, 1002, 1003, 1004)
    alpha: float = 0.05
    min_effect: float = 0.0  # the confirmed mean must also reach this (score units)


@dataclass(frozen=True)
class GuardConfig:
    """Limits of the worker that runs the compiler's front end (check, analyze, mutation)."""

    time_limit_s: float = 30.0
    memory_limit_mb: int = 3000


@dataclass(frozen=True)
class ExecutorConfig:
    kind: str = "local"  # "local" | "ray"
    address: str = ""  # Ray address; "" starts a local Ray instance
    workers: int = 2
    time_limit_s: float = 3600.0
    # resident memory of a job's process tree; 0 = no limit. The default keeps one runaway
    # candidate from taking a shared machine down (the quick MQAR proxy needs < 1.5 GB)
    memory_limit_mb: int = 6000
    memory_mode: str = "rss"  # "rss" (watchdog) | "rlimit" (RLIMIT_AS)
    ray_auth_mode: str = ""  # "token" to join a `ray start` cluster that uses token auth


@dataclass(frozen=True)
class ComponentsConfig:
    """Import paths "module:attribute" of the pluggable parts; "llm" is the built-in proposer.

    With no [llm] section the proposer defaults to the offline typed-mutation proposer and the
    analyzer (an LLM role) is off, so a run needs no endpoint and no key.
    """

    proposer: str = "llm"
    check: str = "linarch:check"
    analyze: str = "linarch:analyze"
    evaluate: str = "linarch.search.evaluate:evaluate"  # BUILTIN_EVALUATE
    # before the cascade, in a worker: the shape the candidate is trained at and its
    # behavioural fingerprint; "" skips it (no behavioural novelty, descriptors at defaults)
    vet: str = "linarch.search.vet:vet"


OFFLINE_PROPOSER = "linarch.search.offline:build_offline_proposer"


@dataclass(frozen=True)
class SearchConfig:
    run: RunConfig = field(default_factory=RunConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    engineer: EngineerConfig = field(default_factory=EngineerConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    cascade: tuple[CascadeStage, ...] = (CascadeStage("static"), CascadeStage("numerics"),
                                         CascadeStage("mqar"))
    islands: IslandConfig = field(default_factory=IslandConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    racing: RacingConfig = field(default_factory=RacingConfig)
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)
    components: ComponentsConfig = field(default_factory=ComponentsConfig)

    @property
    def max_proposals(self) -> int:
        return self.run.max_proposals or 3 * self.run.max_candidates


def load_config(path: Path | str) -> SearchConfig:
    with open(path, "rb") as f:
        return parse_config(tomllib.load(f))


def loads_config(text: str) -> SearchConfig:
    return parse_config(tomllib.loads(text))


def parse_config(data: Mapping[str, Any]) -> SearchConfig:
    sections = {f.name for f in dataclasses.fields(SearchConfig)}
    _reject_unknown("top level", data, sections)
    llm = dict(data.get("llm", {}))
    prices = {
        model: _build(Price, f"llm.prices.{model}", p) for model, p in llm.pop("prices", {}).items()
    }
    options = {
        model: _build(Sampling, f"llm.options.{model}", o)
        for model, o in llm.pop("options", {}).items()
    }
    models = llm.pop("models", None)
    if models is not None:
        models = _models(models)
    llm_cfg = _build(LLMConfig, "llm", llm)
    llm_cfg = dataclasses.replace(
        llm_cfg, prices=prices, options=options, models=models if models else llm_cfg.models
    )
    cascade = tuple(_build(CascadeStage, "cascade", s) for s in data.get("cascade", ()))
    components = dict(data.get("components", {}))
    memory = dict(data.get("memory", {}))
    if "llm" not in data:  # no endpoint configured: offline proposer, no LLM analyzer
        components.setdefault("proposer", OFFLINE_PROPOSER)
        memory.setdefault("analyze", False)
    config = SearchConfig(
        run=_build(RunConfig, "run", data.get("run", {})),
        llm=llm_cfg,
        engineer=_build(EngineerConfig, "engineer", data.get("engineer", {})),
        memory=_build(MemoryConfig, "memory", memory),
        cascade=cascade or SearchConfig().cascade,
        islands=_build(IslandConfig, "islands", data.get("islands", {})),
        executor=_build(ExecutorConfig, "executor", data.get("executor", {})),
        guard=_build(GuardConfig, "guard", data.get("guard", {})),
        racing=_build(RacingConfig, "racing", data.get("racing", {})),
        confirm=_build(ConfirmConfig, "confirm", data.get("confirm", {})),
        components=_build(ComponentsConfig, "components", components),
    )
    _validate(config)
    return _canonical_evaluation(config)


BUILTIN_EVALUATE = "linarch.search.evaluate:evaluate"


def _canonical_evaluation(config: SearchConfig) -> SearchConfig:
    """With the built-in evaluation, the preset and the cascade stages are enums: a name that
    is not one is refused here, when the config is read, not by a worker mid-run; the preset's
    canonical name is kept ("mqar-small", its first name, reads as "proxy"). A replaced
    `components.evaluate` names its own stages and presets."""
    if config.components.evaluate != BUILTIN_EVALUATE:
        return config
    from linarch.evaluation.presets import Preset
    from linarch.search.evaluate import Stage

    try:
        preset = Preset(config.run.preset)
    except ValueError:
        raise ConfigError(f"run.preset {config.run.preset!r} is not a preset; presets: "
                          f"{', '.join(p.value for p in Preset)}") from None
    for stage in config.cascade:
        if stage.stage not in {s.value for s in Stage}:
            raise ConfigError(f"cascade stage {stage.stage!r} is not a stage; stages: "
                              f"{', '.join(s.value for s in Stage)}")
    return dataclasses.replace(config, run=dataclasses.replace(config.run, preset=preset.value))


def _models(table: Any) -> dict[str, str | tuple[str, ...]]:
    if not isinstance(table, Mapping):
        raise ConfigError("[llm.models] must be a table of role = model (or [models])")
    out: dict[str, str | tuple[str, ...]] = {}
    for role, value in table.items():
        if isinstance(value, str) and value:
            out[role] = value
        elif isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
            out[role] = value[0] if len(value) == 1 else tuple(value)
        else:
            raise ConfigError(f"llm.models.{role} must be a model name or a list of names")
    return out


def _build(cls: type, where: str, values: Mapping[str, Any]) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{where}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(f"[{where}]", values, set(fields))
    kwargs = {}
    for key, value in values.items():
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"[{where}]: {err}") from err


def _reject_unknown(where: str, values: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")


def _validate(config: SearchConfig) -> None:
    checks = [
        (config.run.max_candidates >= 0, "run.max_candidates must be >= 0"),
        (config.run.max_proposals >= 0, "run.max_proposals must be >= 0 (0: 3 x candidates)"),
        (config.run.proposal_workers >= 0, "run.proposal_workers must be >= 0"),
        (len(config.run.seeds) >= 1, "run.seeds needs at least one training seed"),
        (config.islands.count >= 1, "islands.count must be >= 1"),
        (
            config.islands.selection in SELECTIONS,
            f"islands.selection must be one of {', '.join(SELECTIONS)}",
        ),
        (0.0 < config.islands.near_duplicate <= 1.0, "islands.near_duplicate must be in (0, 1]"),
        (config.islands.wl_iterations >= 0, "islands.wl_iterations must be >= 0"),
        (config.islands.novelty_retries >= 0, "islands.novelty_retries must be >= 0"),
        (config.islands.behaviour_tolerance >= 0, "islands.behaviour_tolerance must be >= 0"),
        (config.guard.time_limit_s > 0, "guard.time_limit_s must be > 0"),
        (config.guard.memory_limit_mb >= 256, "guard.memory_limit_mb must be >= 256"),
        (config.engineer.max_runtime_repairs >= 0, "engineer.max_runtime_repairs must be >= 0"),
        (config.llm.max_consecutive_rejections >= 1,
         "llm.max_consecutive_rejections must be >= 1"),
        (config.executor.kind in ("local", "ray"), "executor.kind must be 'local' or 'ray'"),
        (config.executor.workers >= 1, "executor.workers must be >= 1"),
        (config.executor.memory_limit_mb >= 0, "executor.memory_limit_mb must be >= 0 (0: none)"),
        (config.executor.memory_mode in ("rss", "rlimit"), "executor.memory_mode: rss|rlimit"),
        (config.engineer.max_repairs >= 0, "engineer.max_repairs must be >= 0"),
        (config.llm.max_retries >= 0, "llm.max_retries must be >= 0"),
        (len({s.stage for s in config.cascade}) == len(config.cascade), "duplicate cascade stage"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    _validate_seeds(config)
    budget = config.llm.budget_usd
    if budget is not None:
        unpriced = sorted(config.llm.all_models() - set(config.llm.prices))
        if unpriced:
            raise ConfigError(
                f"llm.budget_usd is set but model(s) {unpriced} have no [llm.prices.MODEL]"
            )


def _validate_seeds(config: SearchConfig) -> None:
    """The selection seeds (run.seeds, racing.seeds) and the confirmation's fresh seeds: each
    list without repeats, and no confirmation seed among the selection seeds."""
    racing, confirm = config.racing, config.confirm
    selection = tuple(config.run.seeds) + tuple(racing.seeds)
    for name, seeds in (("run.seeds + racing.seeds", selection), ("confirm.seeds", confirm.seeds)):
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"{name} repeat a seed: {list(seeds)}")
    if racing.z < 0:
        raise ConfigError("racing.z must be >= 0 (0: the 95% t intervals)")
    if racing.step < 1 or racing.max_seeds < len(config.run.seeds):
        raise ConfigError(f"racing.step must be >= 1 and racing.max_seeds >= the "
                          f"{len(config.run.seeds)} run.seeds")
    if confirm.top < 0 or not 0.0 < confirm.alpha < 1.0:
        raise ConfigError("confirm.top must be >= 0 and confirm.alpha in (0, 1)")
    if confirm.top and len(confirm.seeds) < 2:
        raise ConfigError("confirm.seeds needs at least 2 seeds (an interval needs two)")
    reused = sorted(set(confirm.seeds) & set(selection))
    if reused:
        raise ConfigError(f"confirm.seeds {reused} are also selection seeds (run.seeds or "
                          "racing.seeds): the confirmation needs seeds never used to select")


def dumps_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer for configuration tables (scalars, arrays, tables, arrays of tables);
    used to record a run's configuration after command-line overrides."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        raise ConfigError(f"cannot write {type(v).__name__} to TOML")

    def table(prefix: str, values: Mapping[str, Any], header: str | None) -> None:
        plain = {k: v for k, v in values.items() if not isinstance(v, Mapping)
                 and not (isinstance(v, list) and v and isinstance(v[0], Mapping))}
        if header is not None:
            lines.append(header)
        lines.extend(f"{k} = {scalar(v)}" for k, v in plain.items())
        lines.append("")
        for k, v in values.items():
            name = f"{prefix}{k}"
            if isinstance(v, Mapping):
                table(name + ".", v, f"[{name}]")
            elif isinstance(v, list) and v and isinstance(v[0], Mapping):
                for item in v:
                    table(name + ".", item, f"[[{name}]]")

    table("", data, None)
    return "\n".join(lines).strip() + "\n"
