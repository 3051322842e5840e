"""What a proposer is told: a ProposalRequest built from the run's state for one journaled
`proposal_started`.

The loop decides who proposes from which parents; this module decides what the proposer
sees: the parents and inspirations, memory entries retrieved for them, what became of the
parent's last children, why the island's last attempts were not evaluated, the task card,
the models chosen for it and, for a runtime repair, the failed candidate with its log tail.
It reads the state and writes nothing, so a request can be rebuilt after a resume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from linarch.search.config import SearchConfig
from linarch.search.ledger import CostLedger
from linarch.search.memory import Memory
from linarch.search.proposer import ProposalRequest, RuntimeFailure, Sibling
from linarch.search.records import Candidate, prompt_verdict
from linarch.search.state import RunState, first_line
from linarch.search.taskfacts import card_context
from linarch.search.templates import load_template

LOG_TAIL = 2500  # characters of a failed worker's log a runtime repair sees


class Briefing:
    def __init__(self, config: SearchConfig, state: RunState, memory: Memory | None,
                 ledger: CostLedger | None):
        self.config = config
        self.state = state
        self.memory = memory
        self.ledger = ledger
        self._card = load_template("task_card.md")

    def request(self, start: Mapping[str, Any]) -> ProposalRequest:
        cid = start["id"]
        archive = self.state.archive
        parents = tuple(archive.candidates[p] for p in start["parents"]
                        if p in archive.candidates)
        inspirations = tuple(archive.candidates[p] for p in start.get("inspirations", ())
                             if p in archive.candidates)
        repair = None
        if start.get("repair_of"):
            failed = archive.candidates[start["repair_of"]]
            stage, outcome, tail = self.state.failure_of(failed.id)
            repair = RuntimeFailure(failed.id, failed.source, failed.motivation, stage, outcome,
                                    tail[-LOG_TAIL:])
        return ProposalRequest(
            candidate_id=cid,
            index=int(start["index"]),
            parents=parents,
            inspirations=inspirations,
            memory=tuple(self.recall(parents)),
            siblings=tuple(self.siblings(parents[0].id if parents else None, cid)),
            feedback=tuple(self.state.feedback.get(int(start["island"]), ())),
            task_card=self.task_card(),
            models=dict(start.get("models") or {}),
            repair=repair,
        )

    def recall(self, parents: Sequence[Candidate]) -> list[Any]:
        if self.memory is None or self.config.memory.entries <= 0 or not parents:
            return []
        query = " ".join(
            f"{p.profile.name} {' '.join(p.profile.transition_classes)} {p.motivation} "
            f"{p.analysis}" for p in parents
        )
        return self.memory.retrieve(query, self.config.memory.entries)

    def siblings(self, parent: str | None, exclude: str) -> list[Sibling]:
        """The last `memory.siblings` children of `parent` and what became of them."""
        if parent is None or self.config.memory.siblings <= 0:
            return []
        records = self.state.records
        kids = [c for c in self.state.order if c != exclude
                and parent in (records[c].get("parents") or ())]
        return [Sibling(c, records[c].get("motivation") or "", self.outcome(c))
                for c in kids[-self.config.memory.siblings:]]

    def outcome(self, cid: str) -> str:
        """One line on what became of a proposal."""
        record = self.state.records[cid]
        status = record.get("status")
        if status == "rejected":
            rej = record["rejection"]
            return f"not evaluated ({rej['reason']}): {first_line(str(rej.get('detail', '')))}"
        if status != "evaluated":
            return "being evaluated"
        c = self.state.archive.candidates[cid]
        if c.result is None:
            return f"failed: {c.failure}"
        r = c.result
        return f"score {r.score:+.4f} [{r.ci_low:+.4f}, {r.ci_high:+.4f}] ({prompt_verdict(r)})"

    def task_card(self) -> str:
        """task_card.md filled with the evaluation's facts and the run's position."""
        s, cfg = self.state, self.config
        best = s.archive.best()
        best_text = "nothing evaluated yet" if best is None or best.result is None else (
            f"{best.id} ({best.profile.name}): score {best.score:+.4f} "
            f"[{best.result.ci_low:+.4f}, {best.result.ci_high:+.4f}]")
        left = cfg.run.max_candidates - s.charged
        budget = f"{left} of {cfg.run.max_candidates} candidates left"
        if self.ledger is not None and self.ledger.budget_usd is not None:
            spent = self.ledger.total().usd
            budget += f"; ${self.ledger.budget_usd - spent:.2f} of LLM budget left"
        context = card_context(s.facts, seeds=cfg.run.seeds, baseline=self.baseline(),
                               best=best_text, budget=budget)
        if not context["stages"]:
            context["stages"] = " -> ".join(st.stage for st in cfg.cascade)
        return self._card.render(**context).user.strip()

    def baseline(self) -> str:
        """DeltaNet's absolute score, as the latest evaluation reported it."""
        metric = str(self.state.facts.get("metric", ""))
        for cid in reversed(self.state.evaluated):
            c = self.state.archive.candidates[cid]
            value = None if c.result is None else c.result.metrics.get(f"baseline_{metric}")
            if value is not None and c.result is not None:
                per = c.result.baseline_per_seed
                seeds = f" (per seed {', '.join(f'{v:.3f}' for v in per)})" if per else ""
                return f"{metric} {value:.4f}{seeds}"
        return "score 0 by definition (its absolute score is not known yet)"
