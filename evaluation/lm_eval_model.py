"""lm-evaluation-harness support: a "linarch" model for `lm_eval --model linarch`.

Importing this module registers the model with lm-eval's registry. lm-eval's own CLI does not
import linarch, so run it through `lm_eval_main` (or `python -m
linarch.evaluation.lm_eval_model --model linarch --model_args pretrained=RUN/checkpoint ...`).
Checkpoints written by linarch also load in lm-eval's hf backend: `--model hf --model_args
pretrained=PATH,trust_remote_code=True` (the config's auto_map re-exports the linarch classes).

Scoring runs the model in full-sequence (chunked) form with right padding, which a causal mixer
ignores; generation decodes token by token on the recurrent cache.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from lm_eval import models as lm_eval_backends
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from linarch.models.modeling import LinarchForCausalLM

from .tokenizer import load_tokenizer

# lm-eval registers its own backends (hf, vllm, ...) only while its registry is empty: import
# them before adding "linarch", or `--model hf` would disappear.
BUILTIN_BACKENDS = tuple(lm_eval_backends.MODEL_MAPPING)


def _load_tokenizer(pretrained: str | Path, tokenizer: str | None) -> PreTrainedTokenizerBase:
    if tokenizer is not None:
        return load_tokenizer(tokenizer)
    root = Path(pretrained)
    if (root / "tokenizer.json").is_file() or (root / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(root)
    return load_tokenizer("byte")


@register_model("linarch")
class LinarchLM(TemplateLM):
    """A saved (or in-memory) LinarchForCausalLM behind lm-eval's LM interface."""

    def __init__(
        self,
        pretrained: str | LinarchForCausalLM,
        tokenizer: str | PreTrainedTokenizerBase | None = None,
        batch_size: int | str = 8,
        max_length: int = 1024,
        device: str | None = None,
        dtype: str = "float32",
        **kwargs,
    ) -> None:
        super().__init__()
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(pretrained, LinarchForCausalLM):
            model = pretrained
            if not isinstance(tokenizer, PreTrainedTokenizerBase):
                tokenizer = load_tokenizer(tokenizer or "byte")
        else:
            model = LinarchForCausalLM.from_pretrained(pretrained)
            if not isinstance(tokenizer, PreTrainedTokenizerBase):
                tokenizer = _load_tokenizer(pretrained, tokenizer)
        torch_dtype = torch.float32 if dtype in (None, "auto") else getattr(torch, str(dtype))
        self.model = model.to(self._device, torch_dtype).eval()
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 8
        self.max_length = int(max_length)

    @property
    def eot_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def device(self) -> torch.device:
        return self._device

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs):
        return self.tokenizer(string, add_special_tokens=bool(add_special_tokens))["input_ids"]

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens)

    @torch.no_grad()
    def _score(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """Log-probability of each continuation after its context, and whether it is greedy."""
        rows = []
        for context, continuation in pairs:
            whole = (context + continuation)[-(self.max_length + 1):]
            scored = min(len(continuation), len(whole) - 1)
            rows.append((whole[:-1], whole[len(whole) - scored:]))
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        results: list[tuple[float, bool] | None] = [None] * len(rows)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start: start + self.batch_size]
            width = max(len(rows[i][0]) for i in chunk)
            batch = torch.full((len(chunk), width), self.eot_token_id, dtype=torch.long)
            for row, i in enumerate(chunk):
                batch[row, : len(rows[i][0])] = torch.tensor(rows[i][0])
            logits = self.model(input_ids=batch.to(self._device)).logits.float()
            logprobs = F.log_softmax(logits, dim=-1)
            for row, i in enumerate(chunk):
                inputs, targets = rows[i]
                end = len(inputs)
                span = logprobs[row, end - len(targets): end]
                target = torch.tensor(targets, device=span.device)
                picked = span.gather(-1, target[:, None]).squeeze(-1)
                greedy = bool((span.argmax(-1) == target).all())
                results[i] = (float(picked.sum()), greedy)
        return results

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        pairs = [(context, continuation) for _, context, continuation in requests]
        return self._score(pairs)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        scores = []
        for request in tqdm(requests, disable=disable_tqdm, desc="rolling loglikelihood"):
            (text,) = request.args
            windows = [
                make_disjoint_window(w)
                for w in get_rolling_token_windows(
                    token_list=self.tok_encode(text), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)
            ]
            scores.append(sum(lp for lp, _ in self._score(windows)))
        return scores

    @torch.no_grad()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy decoding on the recurrent cache until a stop string, EOS or the token limit."""
        outputs = []
        for request in tqdm(requests, disable=disable_tqdm, desc="generate"):
            context, gen_kwargs = request.args
            until = gen_kwargs.get("until") or [self.tok_decode([self.eot_token_id])]
            until = [until] if isinstance(until, str) else list(until)
            limit = int(gen_kwargs.get("max_gen_toks", 256))
            prompt = self.tok_encode(context)[-self.max_length:] or [self.prefix_token_id]
            step = torch.tensor([prompt], device=self._device)
            cache, generated, text = None, [], ""
            for _ in range(limit):
                out = self.model(input_ids=step, cache=cache, use_cache=True)
                cache = out.cache
                token = int(out.logits[0, -1].argmax())
                if token == self.eot_token_id:
                    break
                generated.append(token)
                text = self.tok_decode(generated)
                if any(stop in text for stop in until):
                    break
                step = torch.tensor([[token]], device=self._device)
            for stop in until:
                text = text.split(stop)[0]
            outputs.append(text)
        return outputs


def lm_eval_main(argv: list[str] | None = None) -> int:
    """lm-eval's command line with the "linarch" model registered (e.g. `linarch lm-eval`)."""
    from lm_eval.__main__ import cli_evaluate

    saved = sys.argv
    sys.argv = ["lm_eval", *(sys.argv[1:] if argv is None else argv)]
    try:
        cli_evaluate()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    raise SystemExit(lm_eval_main())
