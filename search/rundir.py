"""The run directory: everything one search run writes, in one place.

    RUN/config.toml        the configuration the run was started with (resume reads it back)
    RUN/journal.jsonl      every decision, fsync'd: the source of truth for resume and report
    RUN/transcript.jsonl   every LLM request and response (llm.py)
    RUN/programs/ID.lin    every proposed program, one file each, never overwritten
    RUN/seeds/NN-NAME.lin  the seed programs, copied when the run was created
    RUN/baseline.lin       the baseline every candidate is compared with (run.baseline)
    RUN/logs/              stdout/stderr of evaluation jobs that did not end OK
    RUN/store.sqlite       the experiment store, unless the config names a shared one
    RUN/report/            what `linarch report RUN` writes
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from linarch.search.config import SearchConfig, loads_config


class RunDirError(RuntimeError):
    """The directory is not a run, is already a run, or another process is running it."""


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def journal(self) -> Path:
        return self.path / "journal.jsonl"

    @property
    def transcript(self) -> Path:
        return self.path / "transcript.jsonl"

    @property
    def programs(self) -> Path:
        return self.path / "programs"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def report(self) -> Path:
        return self.path / "report"

    @property
    def baseline(self) -> Path:
        return self.path / "baseline.lin"

    def baseline_source(self) -> str:
        """The run's baseline program; DeltaNet for runs created before run.baseline existed."""
        return baseline_source(self.path)

    def baseline_name(self) -> str:
        """The baseline's mixer name, for what the run prints (the program is the user's)."""
        return _mixer_name(self.baseline_source())

    @classmethod
    def create(cls, path: Path | str, config_text: str) -> RunDir:
        """A new run: fails if `path` already holds one (use `open` to resume it)."""
        run = cls(Path(path).resolve())
        if run.config_path.exists():
            raise RunDirError(f"{run.path} already holds a run; resume it with --resume")
        loads_config(config_text)  # refuse to create a run from a config that does not parse
        run.programs.mkdir(parents=True, exist_ok=True)
        run.logs.mkdir(exist_ok=True)
        _write_atomic(run.config_path, config_text)
        return run

    @classmethod
    def open(cls, path: Path | str) -> RunDir:
        run = cls(Path(path).resolve())
        if not run.config_path.exists():
            raise RunDirError(f"{run.path} is not a run directory (no config.toml)")
        run.programs.mkdir(exist_ok=True)
        run.logs.mkdir(exist_ok=True)
        return run

    def config(self) -> SearchConfig:
        return loads_config(self.config_path.read_text(encoding="utf-8"))

    def store_path(self, config: SearchConfig) -> Path:
        if config.run.store:
            store = Path(config.run.store).expanduser()
            return store if store.is_absolute() else (self.path / store).resolve()
        return self.path / "store.sqlite"

    def write_program(self, candidate_id: str, source: str) -> Path:
        path = self.programs / f"{candidate_id}.lin"
        _write_atomic(path, source)
        return path

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive use of the run; the kernel releases it if the process dies."""
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunDirError(f"{self.path} is in use by another process") from None
            yield
        finally:
            os.close(fd)


def baseline_source(run_path: Path | str) -> str:
    """The baseline of the run at `run_path` ("" or no copy there: DeltaNet, the default)."""
    copy = Path(run_path) / "baseline.lin" if run_path else None
    if copy is not None and copy.is_file():
        return copy.read_text(encoding="utf-8")
    from linarch.api import example_path

    return example_path("deltanet").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=8)
def _mixer_name(source: str) -> str:
    """A program's mixer name (the analysis is kept: the report asks for it more than once)."""
    from linarch.api import analyze

    return analyze(source).name


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
