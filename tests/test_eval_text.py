"""Text for the LM task: the byte tokenizer, the stdlib corpus, local files, bits per byte."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from linarch.evaluation.problems import LMProblem, ModelShape
from linarch.evaluation.text_data import TextSource, load_corpus, stdlib_documents
from linarch.evaluation.tokenizer import BYTE_VOCAB, byte_tokenizer, encode
from linarch_testing import mixers as mt

SAMPLE = "def f(x):\n\treturn 'héllo ∑ 😀'  # bytes\n"


def test_byte_tokenizer_ids_are_utf8_bytes(tmp_path):
    tok = byte_tokenizer()
    ids = tok(SAMPLE, add_special_tokens=False)["input_ids"]
    assert ids == list(SAMPLE.encode("utf-8"))
    assert tok.decode(ids) == SAMPLE
    assert len(tok) == BYTE_VOCAB and tok.eos_token_id == 256
    assert encode(tok, SAMPLE, is_bytes=True).tolist() == ids
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(SAMPLE, add_special_tokens=False)["input_ids"] == ids
    assert again.eos_token_id == 256


def test_stdlib_corpus_is_split_by_document_within_budget():
    spec = TextSource(max_train_bytes=150_000, max_val_bytes=30_000, val_fraction=0.2)
    corpus = load_corpus(spec)
    assert corpus.vocab_size == BYTE_VOCAB and corpus.eos_id == 256
    assert 100_000 < corpus.train.numel() <= 150_000 + 200
    assert 10_000 < corpus.val.numel() <= 30_000 + 200
    assert corpus.train.max() <= 256 and (corpus.val == 256).any()
    assert load_corpus(spec).fingerprint == corpus.fingerprint
    names = [d.name for d in stdlib_documents()]
    assert "os.py" in names and not any(n.startswith("test/") for n in names)


@pytest.mark.parametrize("kind", ["txt", "jsonl", "parquet"])
def test_local_files_load_through_datasets(tmp_path, kind):
    lines = [f"document number {i}: " + "abc " * 30 for i in range(200)]
    path = tmp_path / f"data.{kind}"
    if kind == "txt":
        path.write_text("\n".join(lines) + "\n")
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"body": t}) + "\n" for t in lines))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"body": lines}), path)
    field = "text" if kind == "txt" else "body"
    corpus = load_corpus(TextSource(source=str(path), text_field=field, val_fraction=0.2))
    text = bytes(t for t in corpus.train.tolist() + corpus.val.tolist() if t < 256).decode()
    assert sorted(text.split("document number ")[1:]) == sorted(
        t.removeprefix("document number ") for t in lines)


def test_any_tokenizer_by_name_or_path(tmp_path):
    byte_tokenizer().save_pretrained(tmp_path / "tok")
    spec = TextSource(max_train_bytes=20_000, max_val_bytes=4_000)
    by_path = load_corpus(TextSource(**{**vars(spec), "tokenizer": str(tmp_path / "tok")}))
    by_bytes = load_corpus(spec)
    assert torch.equal(by_path.train, by_bytes.train)
    assert torch.equal(by_path.token_bytes, by_bytes.token_bytes)  # 1 per byte, 0 for EOS


def test_bits_per_byte_is_the_loss_per_byte_in_bits():
    text = TextSource(max_train_bytes=20_000, max_val_bytes=6_000)
    problem = LMProblem(text, ModelShape(32, 2, 2), seq_len=32, val_windows=8)
    with mt.install():
        torch.manual_seed(0)
        model = problem.build_model(mt.spec("linear_attention"), problem.shape).eval()
    corpus = problem.make_data(0)
    metrics = problem.evaluate(model, corpus, torch.device("cpu"))
    windows = corpus.val[: 8 * 33].view(8, 33)
    with torch.no_grad():
        logits = model(windows[:, :-1]).logits
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                            windows[:, 1:].reshape(-1), reduction="sum")
    nbytes = int((windows[:, 1:] != 256).sum())
    assert metrics["val_loss"] == pytest.approx(float(nll) / (8 * 32), rel=1e-5)
    assert metrics["bits_per_byte"] == pytest.approx(float(nll) / nbytes / math.log(2), rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(np.exp(metrics["val_loss"]), rel=1e-6)
