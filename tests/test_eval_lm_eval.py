"""lm-evaluation-harness, offline: local task YAMLs over local jsonl files, both backends.

The oracle is the model itself: log-likelihoods computed here directly must give the accuracy
and bits per byte that lm-eval reports through the "linarch" model and through its hf backend.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from linarch_testing import mixers as mt

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from linarch.evaluation.lm_eval_model import LinarchLM  # noqa: E402
from linarch.evaluation.tokenizer import byte_tokenizer  # noqa: E402
from linarch.models.modeling import LinarchForCausalLM  # noqa: E402

QUESTIONS = [
    {"question": "Which word names a colour?", "choices": ["red", "run", "rain"], "answer": 0},
    {"question": "2 + 2 =", "choices": ["3", "4", "five"], "answer": 1},
    {"question": "The opposite of up is", "choices": ["left", "over", "down"], "answer": 2},
    {"question": "import", "choices": [" os", " the", " xyz"], "answer": 0},
    {"question": "def f(x): return", "choices": [" x", " def", " ("], "answer": 0},
]
DOCS = [{"text": "def add(a, b):\n    return a + b\n"},
        {"text": "The quick brown fox jumps over the lazy dog."},
        {"text": "for i in range(10):\n    print(i)\n"}]

MC_YAML = """task: linarch_test_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
"""
PPL_YAML = """task: linarch_test_ppl
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: bits_per_byte
  - metric: byte_perplexity
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmeval")
    with mt.install():
        torch.manual_seed(0)
        config = mt.tiny_config("linear_attention", vocab_size=257, eos_token_id=256,
                                bos_token_id=256)
        model = LinarchForCausalLM(config).eval()
        model.save_pretrained(root / "ckpt")
        byte_tokenizer().save_pretrained(root / "ckpt")
        tasks = root / "tasks"
        tasks.mkdir()
        for name, rows, template in (("mc", QUESTIONS, MC_YAML), ("ppl", DOCS, PPL_YAML)):
            data = root / f"{name}.jsonl"
            data.write_text("".join(json.dumps(r) + "\n" for r in rows))
            (tasks / f"{name}.yaml").write_text(template.format(data=data))
        yield model, root


def loglik(model, context: list[int], continuation: bytes) -> float:
    ids = torch.tensor([context + list(continuation)])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    start = len(context)
    return sum(float(logp[t - 1, ids[0, t]]) for t in range(start, ids.shape[1]))


def expected_scores(model):
    correct = []
    for q in QUESTIONS:
        question = list(q["question"].encode())
        scores = [loglik(model, question, (" " + c).encode()) for c in q["choices"]]
        correct.append(float(max(range(len(scores)), key=scores.__getitem__) == q["answer"]))
    nll = -sum(loglik(model, [256], d["text"].encode()) for d in DOCS)
    nbytes = sum(len(d["text"].encode()) for d in DOCS)
    return sum(correct) / len(correct), nll / nbytes / math.log(2)


def evaluate(backend: str, model_args: str, root):
    out = lm_eval.simple_evaluate(
        model=backend, model_args=model_args, tasks=["linarch_test_mc", "linarch_test_ppl"],
        task_manager=TaskManager(include_path=str(root / "tasks")), batch_size=2,
        device="cpu", log_samples=False)
    return (out["results"]["linarch_test_mc"]["acc,none"],
            out["results"]["linarch_test_ppl"]["bits_per_byte,none"])


def test_linarch_model_scores_like_the_model_itself(setup):
    model, root = setup
    with mt.install():
        acc, bpb = evaluate("linarch", f"pretrained={root / 'ckpt'}", root)
    want_acc, want_bpb = expected_scores(model)
    assert acc == pytest.approx(want_acc)
    assert bpb == pytest.approx(want_bpb, rel=1e-5)


def test_hf_backend_loads_the_checkpoint_and_agrees(setup):
    model, root = setup
    with mt.install():
        acc, bpb = evaluate("hf", f"pretrained={root / 'ckpt'},dtype=float32", root)
    want_acc, want_bpb = expected_scores(model)
    assert acc == pytest.approx(want_acc)
    assert bpb == pytest.approx(want_bpb, rel=1e-5)


def test_generate_until_decodes_greedily_and_stops(setup):
    model, root = setup
    lm = LinarchLM(pretrained=model, tokenizer=byte_tokenizer())
    context = "def f(x):"
    request = Instance(request_type="generate_until", doc={}, idx=0,
                       arguments=(context, {"until": ["\n\n"], "max_gen_toks": 12}))
    (text,) = lm.generate_until([request], disable_tqdm=True)
    ids = torch.tensor([list(context.encode())])
    greedy = model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:].tolist()
    if 256 in greedy:
        greedy = greedy[: greedy.index(256)]
    expected = bytes(greedy).decode("utf-8", errors="replace").split("\n\n")[0]
    assert text == expected


def test_lm_eval_command_line_knows_the_linarch_model(setup, capsys):
    from linarch.evaluation.lm_eval_model import lm_eval_main

    model, root = setup
    with mt.install():
        code = lm_eval_main(["run", "--model", "linarch", "--model_args",
                             f"pretrained={root / 'ckpt'}", "--tasks", "linarch_test_mc",
                             "--include_path", str(root / "tasks"), "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    want_acc, _ = expected_scores(model)
    row = next(line for line in printed.splitlines() if line.startswith("|linarch_test_mc"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[cells.index("acc") + 2]) == pytest.approx(want_acc, abs=1e-4)
