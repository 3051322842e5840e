"""The LM around layers compiled from the shipped examples, through the default resolver.

This is the seam between the compiler and the models: the compiled layer must follow the cache
protocol (prompt then one token gives the full forward's logits), honour left padding, and a
checkpoint must rebuild it by compiling the stored source again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import linarch
from linarch.evaluation.mixers import mixer_from_dsl
from linarch.models.configuration import LinarchConfig
from linarch.models.modeling import LinarchForCausalLM

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = ["deltanet", "gated_deltanet", "mamba2", "rwkv7"]

pytestmark = pytest.mark.skipif(not hasattr(linarch, "compile"), reason="no compiler yet")


def compiled_model(name: str) -> LinarchForCausalLM:
    spec = mixer_from_dsl(EXAMPLES / f"{name}.lin")
    torch.manual_seed(0)
    config = LinarchConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2, num_heads=2,
                           mixer_source=spec.source, mixer_name=spec.name)
    return LinarchForCausalLM(config).eval()


@pytest.mark.parametrize("name", NAMES)
def test_compiled_layers_decode_like_the_full_forward(name):
    model = compiled_model(name)
    x = torch.randint(0, 64, (2, 70), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(x).logits
        out = model(x[:, :37], use_cache=True)
        steps = [out.logits]
        for t in range(37, 70):
            out = model(x[:, t: t + 1], cache=out.cache, use_cache=True)
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES[:2])
def test_compiled_layers_honour_left_padding_and_reload(tmp_path, name):
    model = compiled_model(name)
    gen = torch.Generator().manual_seed(2)
    long, short = torch.randint(0, 64, (1, 12), generator=gen), torch.randint(0, 64, (1, 7),
                                                                              generator=gen)
    batch = torch.cat([long, torch.cat([torch.zeros(1, 5, dtype=torch.long), short], 1)])
    mask = torch.ones_like(batch)
    mask[1, :5] = 0
    with torch.no_grad():
        padded = model(batch, attention_mask=mask).logits
        torch.testing.assert_close(padded[1, 5:], model(short).logits[0], rtol=1e-4, atol=1e-5)
        model.save_pretrained(tmp_path)
        loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
        torch.testing.assert_close(loaded(long).logits, model(long).logits, rtol=0, atol=0)
