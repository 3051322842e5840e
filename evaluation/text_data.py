"""Text for the causal-LM measure: documents -> token streams -> training windows.

Sources: "stdlib" (the Python standard library's own .py files under sysconfig's stdlib path,
present on every machine, no download), local text / json / jsonl / parquet files through
`datasets`, or a hub dataset name when online. Documents go to validation by a hash of their
name, so the split does not depend on the order they are read in, and each split is one stream
of tokens with an end-of-text token between documents.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .tokenizer import encode, load_tokenizer, token_byte_lengths

SKIPPED_STDLIB_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib",
                                 "lib2to3", "turtledemo"})
DATASETS_BUILDERS = {".txt": "text", ".text": "text", ".json": "json", ".jsonl": "json",
                     ".parquet": "parquet"}


@dataclass(frozen=True)
class TextSource:
    """Where the text comes from and how much of it to use."""

    source: str = "stdlib"
    tokenizer: str = "byte"
    text_field: str = "text"
    max_train_bytes: int = 2_000_000
    max_val_bytes: int = 200_000
    val_fraction: float = 0.05


@dataclass(frozen=True)
class Document:
    name: str
    text: str


@dataclass(frozen=True)
class TokenCorpus:
    """Train and validation token streams, and the UTF-8 bytes each token id stands for."""

    train: torch.Tensor
    val: torch.Tensor
    vocab_size: int
    eos_id: int
    token_bytes: torch.Tensor
    fingerprint: str


def stdlib_documents() -> Iterator[Document]:
    """The standard library's .py files (without its test suites), in path order, lazily."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_STDLIB_DIRS and d != "__pycache__"]
        paths.extend(Path(folder) / f for f in files if f.endswith(".py"))
    for path in sorted(paths):
        rel = path.relative_to(root)
        try:
            yield Document(rel.as_posix(), path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue


def dataset_documents(source: str, text_field: str) -> list[Document]:
    """Documents from local files (a file, a directory, or a glob) or a hub dataset name."""
    import datasets

    files = _local_files(source)
    if files:
        builder = DATASETS_BUILDERS[files[0].suffix]
        data = datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")
    else:
        data = datasets.load_dataset(source, split="train")
    texts = data[text_field]
    return [Document(f"{source}#{i}", t) for i, t in enumerate(texts) if t]


def _local_files(source: str) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix in DATASETS_BUILDERS)
    elif any(ch in source for ch in "*?["):
        found = sorted(p for p in Path().glob(source) if p.suffix in DATASETS_BUILDERS)
    elif path.is_file():
        found = [path]
    else:
        return []
    suffixes = {DATASETS_BUILDERS.get(p.suffix) for p in found}
    if len(suffixes) != 1 or None in suffixes:
        raise ValueError(f"{source}: expected files of one kind among {sorted(DATASETS_BUILDERS)}")
    return found


def is_validation(name: str, fraction: float) -> bool:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def load_corpus(spec: TextSource) -> TokenCorpus:
    """Tokenise the source into train / validation streams capped at the byte budgets."""
    docs: Iterable[Document]
    if spec.source == "stdlib":
        docs = stdlib_documents()
    else:
        docs = dataset_documents(spec.source, spec.text_field)
    tokenizer = load_tokenizer(spec.tokenizer)
    is_bytes = spec.tokenizer == "byte"
    eos = int(tokenizer.eos_token_id)
    vocab = len(tokenizer)
    streams: dict[bool, list[np.ndarray]] = {False: [], True: []}
    budget = {False: spec.max_train_bytes, True: spec.max_val_bytes}
    digest = hashlib.sha256(f"{spec.tokenizer}\0".encode())
    for doc in docs:
        if budget[False] <= 0 and budget[True] <= 0:
            break
        val = is_validation(doc.name, spec.val_fraction)
        if budget[val] <= 0:
            continue
        text = doc.text[: budget[val]]
        budget[val] -= len(text.encode("utf-8"))
        streams[val].append(encode(tokenizer, text, is_bytes))
        streams[val].append(np.array([eos], dtype=np.int64))
        digest.update(f"{int(val)}{doc.name}\0".encode())
        digest.update(text.encode("utf-8"))
    if not streams[False] or not streams[True]:
        raise ValueError(f"{spec.source}: too little text for both a train and a val split")
    if is_bytes:
        lengths = np.ones(vocab, dtype=np.int64)
        lengths[eos] = 0
    else:
        lengths = token_byte_lengths(tokenizer, vocab)
    return TokenCorpus(
        train=torch.from_numpy(np.concatenate(streams[False])),
        val=torch.from_numpy(np.concatenate(streams[True])),
        vocab_size=vocab,
        eos_id=eos,
        token_bytes=torch.from_numpy(lengths),
        fingerprint=digest.hexdigest()[:16],
    )


def random_windows(stream: torch.Tensor, length: int, count: int,
                   generator: torch.Generator) -> torch.Tensor:
    """`count` windows of `length` tokens at uniform random offsets: [count, length]."""
    if stream.numel() <= length:
        raise ValueError(f"a stream of {stream.numel()} tokens has no window of {length}")
    starts = torch.randint(0, stream.numel() - length, (count,), generator=generator)
    return torch.stack([stream[s: s + length] for s in starts.tolist()])


def tiled_windows(stream: torch.Tensor, length: int, max_count: int) -> torch.Tensor:
    """Consecutive non-overlapping windows from the start: the fixed validation set."""
    count = min(max_count, stream.numel() // length)
    if count == 0:
        raise ValueError(f"a stream of {stream.numel()} tokens has no window of {length}")
    return stream[: count * length].view(count, length)
