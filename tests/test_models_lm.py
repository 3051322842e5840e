"""The causal LM around a mixer: causality, decoding, padding, save/load, aux loss, init."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from linarch.models.autoencoder import MixerAutoEncoder
from linarch.models.cache import LinarchCache
from linarch.models.configuration import LinarchConfig, mlp_width
from linarch.models.modeling import LinarchForCausalLM
from linarch_testing import mixers as mt

MIXERS = sorted(mt.MIXERS)


@pytest.fixture(autouse=True)
def _test_mixers():
    with mt.install():
        yield


def make(name: str, seed: int = 0, **overrides) -> LinarchForCausalLM:
    torch.manual_seed(seed)
    return LinarchForCausalLM(mt.tiny_config(name, **overrides)).eval()


def tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 64, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", MIXERS)
def test_logits_are_causal_in_values_and_gradients(name):
    model = make(name)
    x = tokens(2, 23)
    y = x.clone()
    y[:, 15:] = (y[:, 15:] + 7) % 64
    lx, ly = model(x).logits, model(y).logits
    torch.testing.assert_close(lx[:, :15], ly[:, :15], rtol=0, atol=0)
    assert (lx[:, 15:] - ly[:, 15:]).abs().max() > 1e-4
    embeds = model.get_input_embeddings()(x).detach().requires_grad_(True)
    model(inputs_embeds=embeds).logits[:, 10].sum().backward()
    assert embeds.grad[:, 11:].abs().max() == 0
    assert embeds.grad[:, :11].abs().max() > 0


@pytest.mark.parametrize("name", MIXERS)
def test_prompt_then_token_decoding_matches_full_forward(name):
    """Chunked forward over 70 tokens (two chunks) against prompt + one token at a time."""
    model = make(name, num_hidden_layers=3)
    x = tokens(2, 70)
    full = model(x).logits
    out = model(x[:, :37], use_cache=True)
    cache, steps = out.cache, [out.logits]
    assert isinstance(cache, LinarchCache) and cache.get_seq_length() == 37
    for t in range(37, 70):
        out = model(x[:, t: t + 1], cache=cache, use_cache=True)
        steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-4, atol=1e-5)
    assert cache.get_seq_length() == 70


@pytest.mark.parametrize("name", MIXERS)
def test_generate_is_greedy_decoding_of_the_full_model(name):
    model = make(name)
    prompt = tokens(2, 9)
    generated = model.generate(prompt, max_new_tokens=8, do_sample=False)
    assert generated.shape == (2, 17)
    seq = prompt
    for _ in range(8):
        nxt = model(seq).logits[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], 1)
    assert torch.equal(generated, seq)


def test_beam_search_reorders_the_recurrent_states():
    model = make("linear_attention")
    prompt = tokens(1, 6)
    out = model.generate(prompt, max_new_tokens=5, num_beams=3, do_sample=False,
                         output_scores=True, return_dict_in_generate=True)
    seq = out.sequences[0]
    # the returned beam's score is its summed log-probability under the full model
    with torch.no_grad():
        logp = torch.log_softmax(model(seq[None, :-1]).logits[0], -1)
    total = sum(float(logp[t - 1, seq[t]]) for t in range(6, 11))
    assert abs(float(out.sequences_scores[0]) * 5 - total) < 1e-3


@pytest.mark.parametrize("name", MIXERS)
def test_left_padding_matches_unpadded_sequences(name):
    model = make(name)
    long, short = tokens(1, 12, seed=3), tokens(1, 7, seed=4)
    batch = torch.cat([long, torch.cat([torch.zeros(1, 5, dtype=torch.long), short], 1)])
    mask = torch.ones_like(batch)
    mask[1, :5] = 0
    padded = model(batch, attention_mask=mask).logits
    torch.testing.assert_close(padded[0], model(long).logits[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(padded[1, 5:], model(short).logits[0], rtol=1e-4, atol=1e-5)
    generated = model.generate(batch, attention_mask=mask, max_new_tokens=4, do_sample=False)
    alone = model.generate(short, max_new_tokens=4, do_sample=False)
    assert torch.equal(generated[1, 5:], alone[0])


@pytest.mark.parametrize("name", MIXERS)
def test_save_and_load_round_trip(tmp_path, name):
    model = make(name, seed=5)
    x = tokens(2, 20)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, LinarchForCausalLM)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), LinarchConfig)
    assert loaded.config.mixer_source == mt.source_of(name)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    for (key, buf), (_, other) in zip(model.named_buffers(), loaded.named_buffers()):
        assert torch.equal(buf, other), key  # non-persistent rotary frequencies included
    torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=0, atol=0)


def test_untied_head_round_trips(tmp_path):
    model = make("linear_attention", tie_word_embeddings=False)
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    model.save_pretrained(tmp_path)
    loaded = LinarchForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert not torch.equal(loaded.lm_head.weight, loaded.model.embed_tokens.weight)


def test_a_fresh_process_loads_with_trust_remote_code(tmp_path):
    make("softmax_attention").save_pretrained(tmp_path)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(mt.__file__).parents[1])!r})
        from linarch_testing import mixers as mt
        from linarch.models.resolver import set_layer_resolver
        set_layer_resolver(mt.resolve)
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        print(type(model).__name__, model.model.layers[0].mixer.inv_freq[1].item())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    name, freq = out.stdout.split()[-2:]
    assert name == "LinarchForCausalLM"
    assert abs(float(freq) - 10000.0 ** (-1 / 8)) < 1e-6


def test_aux_loss_is_the_sum_over_layers_and_kept_out_of_the_loss():
    model = make("linear_attention", num_hidden_layers=3, mixer_kwargs={"aux_weight": 0.5})
    x = tokens(2, 16)
    out = model(x, labels=x)
    expected = sum(block.mixer.aux_loss for block in model.model.layers)
    assert float(out.aux_loss.detach()) > 0
    torch.testing.assert_close(out.aux_loss, expected.float())
    logits = out.logits[:, :-1].reshape(-1, 64)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(logits,
                                                                           x[:, 1:].reshape(-1)))
    assert float(make("softmax_attention")(x).aux_loss) == 0.0


def test_label_loss_runs_the_head_only_where_labels_are():
    model = make("linear_attention")
    x = tokens(3, 16)
    labels = torch.full_like(x, -100)
    labels[:, [4, 9]] = x[:, [5, 10]]
    hidden = model.model(input_ids=x).last_hidden_state
    sparse = model.label_loss(hidden, labels)
    dense = torch.nn.functional.cross_entropy(model.lm_head(hidden).reshape(-1, 64),
                                              labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(sparse, dense)


@torch.no_grad()
def test_initialisation_follows_the_config():
    model = make("linear_attention", initializer_range=0.02, zero_init_out_proj=True)
    emb = model.model.embed_tokens.weight
    assert abs(float(emb.std()) - 0.02) < 0.003
    q = model.model.layers[0].mixer.q_proj.weight
    assert abs(float(q.std()) - 0.02) < 0.005
    for block in model.model.layers:
        assert float(block.mixer.o_proj.weight.abs().max()) == 0.0
        assert float(block.mlp.down_proj.weight.abs().max()) == 0.0
        assert torch.equal(block.mixer_norm.weight, torch.ones_like(block.mixer_norm.weight))


def test_config_shapes():
    config = mt.tiny_config("linear_attention", use_mlp=False)
    model = LinarchForCausalLM(config)
    assert all(not hasattr(block, "mlp") for block in model.model.layers)
    assert LinarchConfig(hidden_size=96, num_heads=4).intermediate_size == mlp_width(96) == 256
    with pytest.raises(ValueError, match="divisible"):
        LinarchConfig(hidden_size=30, num_heads=4)


@torch.no_grad()
def test_autoencoder_reconstructs_from_the_last_state_only():
    torch.manual_seed(0)
    model = MixerAutoEncoder(mt.tiny_config("linear_attention")).eval()
    x = tokens(2, 10)
    logits, aux = model(x)
    assert logits.shape == (2, 10, 64) and float(aux) == 0.0
    y = x.clone()
    y[:, :3] = (y[:, :3] + 1) % 64  # changes reach the code through the last position
    assert (model(y)[0] - logits).abs().max() > 0
