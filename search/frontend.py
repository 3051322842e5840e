"""What the search asks of the compiler's front end, every call bounded in time and memory.

`FrontEnd` wraps the injected `check` and `analyze` (the real compiler, or a test's toy one)
and the mutation engine. With a Guard (the default a run is built with), each call runs in the
guard's worker process and a call that hangs or eats memory raises a GuardError instead of
stopping the search; without one (unit tests of the loop's logic), calls run in this process.
Either way the answers are the same JSON-shaped records, so the two modes cannot drift apart.

The functions below the class run where the guard runs them: they take only picklable
arguments (module-level functions, strings, numbers) and return plain data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from linarch.search.guard import Guard, GuardError, GuardFailure, GuardTimeout, RemoteError
from linarch.search.records import Profile

CheckFn = Callable[[str], Sequence[Any]]
AnalyzeFn = Callable[[str], Any]

__all__ = ["FrontEnd", "Diagnostic", "GuardError", "GuardFailure", "GuardTimeout",
           "RemoteError"]


@dataclass(frozen=True)
class Diagnostic:
    """A compiler diagnostic as the search holds it: its JSON fields (DiagnosticLike)."""

    code: str
    severity: str
    message: str
    data: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Diagnostic:
        return cls(str(data.get("code", "")), str(data.get("severity", "error")),
                   str(data.get("message", "")), dict(data))


class FrontEnd:
    """check / profile / mutation moves, each through the guard when one is given."""

    def __init__(self, check: CheckFn, analyze: AnalyzeFn, guard: Guard | None = None,
                 wl_iterations: int = 1):
        self.check_fn = check
        self.analyze_fn = analyze
        self.guard = guard
        self.wl_iterations = wl_iterations

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args), in the guard's worker when there is one."""
        if self.guard is None:
            return fn(*args)
        return self.guard.call(fn, *args)

    def check(self, source: str) -> list[Diagnostic]:
        return [Diagnostic.from_dict(d) for d in self.run(check_records, self.check_fn, source)]

    def profile(self, source: str) -> Profile:
        return Profile.from_dict(self.run(profile_record, self.analyze_fn, source,
                                          self.wl_iterations))

    def close(self) -> None:
        if self.guard is not None:
            self.guard.close()


def check_records(check: CheckFn, source: str) -> list[dict[str, Any]]:
    return [dict(d.to_dict()) for d in check(source)]


def profile_record(analyze: AnalyzeFn, source: str, wl_iterations: int) -> dict[str, Any]:
    from linarch.search.novelty import wl_features

    a = analyze(source)
    return Profile(
        name=a.name,
        structural_hash=a.structural_hash,
        flops_per_token=int(a.flops_per_token),
        state_bytes=int(a.state_bytes),
        transition_classes=tuple(a.transition_classes),
        num_paths=int(a.num_paths),
        wl_features=tuple(sorted(wl_features(a.graph, wl_iterations).items())),
    ).to_dict()
