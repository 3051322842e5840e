"""A problem is one thing a model is trained on: its data, model, loss and evaluation.

MQAR and the LM task are one problem each; MAD is six (one per task, each its own model). The
trainer sees only this interface, so every problem gets the same loop, limits and outcomes.
"""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from linarch.models.autoencoder import MixerAutoEncoder
from linarch.models.configuration import LinarchConfig
from linarch.models.modeling import LinarchForCausalLM

from .mad import MADSetting, generate_mad, macro_accuracy
from .mixers import MixerSpec
from .mqar import MQARSetting, generate_mqar, query_accuracy
from .results import Metric
from .synthetic import IGNORE, TokenSplit
from .text_data import TextSource, TokenCorpus, load_corpus, random_windows, tiled_windows
from .tokenizer import load_tokenizer


@dataclass(frozen=True)
class ModelShape:
    """The backbone around the mixer; `hidden_size` is what parameter matching adjusts."""

    hidden_size: int
    num_layers: int
    num_heads: int
    use_mlp: bool = True
    intermediate_size: int | None = None
    tie_embeddings: bool = True
    block_kinds: tuple[str, ...] = ()  # per block "mixer" or "base_conv"; () = all the mixer
    mixer_kwargs: tuple[tuple[str, object], ...] = ()  # the mixer's own width (param matching)

    def with_mixer_kwargs(self, **kwargs: object) -> ModelShape:
        merged = dict(self.mixer_kwargs) | kwargs
        return replace(self, mixer_kwargs=tuple(sorted(merged.items())))

    def resized(self, hidden_size: int, intermediate_size: int | None = None) -> ModelShape:
        return replace(self, hidden_size=hidden_size, intermediate_size=intermediate_size)


def shape_json(shape: ModelShape) -> dict:
    data = vars(shape).copy()
    data["block_kinds"] = list(shape.block_kinds)
    data["mixer_kwargs"] = {k: v for k, v in shape.mixer_kwargs}
    return data


def shape_kwargs(mixer: MixerSpec, shape: ModelShape) -> dict:
    """Hyper-parameters that follow the backbone's shape: a mixer with a `head_dim` keyword
    (Gated DeltaNet, KDA, Comba, DeltaProduct: fla defaults it to 256 whatever the width) gets
    hidden_size // num_heads, as fla's model configs set it, so every mixer is compared at the
    width the shape gives it; then the shape's own `mixer_kwargs` (what parameter matching set)
    override."""
    import inspect

    params = inspect.signature(mixer.layer_cls.__init__).parameters
    kwargs = {}
    # a compiled layer says whether it reads head_dim itself; where it only derives num_heads
    # from it (Mamba2, RWKV-7: head_dim = expand * hidden / num_heads), num_heads suffices
    hyper = getattr(mixer.layer_cls, "HYPER_PARAMETERS", {}).get("head_dim")
    if "head_dim" in params and (hyper is None or hyper.used):
        kwargs["head_dim"] = max(1, shape.hidden_size // shape.num_heads)
    return kwargs | dict(shape.mixer_kwargs)


def linarch_config(mixer: MixerSpec, shape: ModelShape, vocab_size: int) -> LinarchConfig:
    return LinarchConfig(
        mixer_kwargs=shape_kwargs(mixer, shape),
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_heads=shape.num_heads,
        mixer_source=mixer.source,
        mixer_name=mixer.name,
        use_mlp=shape.use_mlp,
        intermediate_size=shape.intermediate_size,
        tie_word_embeddings=shape.tie_embeddings,
        block_kinds=list(shape.block_kinds),
    )


class Problem(ABC):
    """Data, model, loss and evaluation of one training problem."""

    name: str
    metric: Metric
    shape: ModelShape

    @abstractmethod
    def make_data(self, seed: int):
        """Train and test data for `seed` (the same for every mixer: runs pair by seed)."""

    @abstractmethod
    def build_model(self, mixer: MixerSpec, shape: ModelShape) -> nn.Module: ...

    @abstractmethod
    def batches(self, data, batch_size: int, generator: torch.Generator) -> Iterator[TokenSplit]:
        """Endless training batches, in an order fixed by `generator`."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: TokenSplit) -> tuple[torch.Tensor, torch.Tensor]:
        """(task loss, summed auxiliary loss of the mixers)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, data, device: torch.device) -> dict[str, float]:
        """Held-out metrics, including `self.metric.name`."""

    @abstractmethod
    def definition(self) -> dict:
        """Everything about the data and the model that a run's result depends on (JSON): part
        of the cache key of every run, so a changed definition never reuses an old run."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Size of the output vocabulary the loss is taken over."""

    @property
    @abstractmethod
    def state_seq_len(self) -> int:
        """The sequence length at which a mixer's state is measured (its longest input)."""

    @property
    def chance_loss(self) -> float:
        """Cross-entropy of a uniform guess over the vocabulary: where training starts, and the
        reference of the trainer's divergence rule."""
        return math.log(self.vocab_size)

    def tokens_per_example(self, batch: TokenSplit) -> int:
        return batch.inputs.shape[1]

    def save_artifacts(self, directory: Path) -> None:  # noqa: B027 (optional hook)
        """Files a checkpoint needs besides the model (the LM task writes its tokenizer)."""


def _labelled_loss(model: LinarchForCausalLM, batch: TokenSplit):
    out = model.model(input_ids=batch.inputs)
    return model.label_loss(out.last_hidden_state, batch.labels), out.aux_loss


@torch.no_grad()
def _labelled_eval(model: LinarchForCausalLM, split: TokenSplit, device: torch.device,
                   batch_size: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Predictions and gold labels at labelled positions, and the mean loss there."""
    preds, golds, nll, count = [], [], 0.0, 0
    for start in range(0, len(split), batch_size):
        inputs = split.inputs[start: start + batch_size].to(device)
        labels = split.labels[start: start + batch_size].to(device)
        with autocast(device):
            hidden = model.model(input_ids=inputs).last_hidden_state
        keep = labels != IGNORE
        logits = model.lm_head(hidden[keep]).float()
        nll += float(F.cross_entropy(logits, labels[keep], reduction="sum"))
        count += int(keep.sum())
        preds.append(logits.argmax(-1).cpu())
        golds.append(labels[keep].cpu())
    return torch.cat(preds), torch.cat(golds), nll / max(count, 1)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, a no-op elsewhere (CPU training stays fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@dataclass(frozen=True)
class MQARData:
    """Training examples, and per test setting (by label) the validation and test examples."""

    train: TokenSplit
    test: dict[str, TokenSplit]
    valid: dict[str, TokenSplit]


def setting_label(setting: MQARSetting) -> str:
    return f"T{setting.seq_len}-kv{setting.num_kv_pairs}"


class MQARProblem(Problem):
    """Zoology's MQAR, trained at `setting` and tested at each of `tests` (default: `setting`).

    Testing harder than training (more pairs, longer sequences) keeps strong mixers off the
    ceiling. The headline `accuracy` is the mean over the test settings; `valid_accuracy`, on
    separate examples of the same settings, is what a learning-rate choice may look at (so the
    choice never sees the test set). With `num_train = steps * batch` every training example is
    fresh. The head runs only at query positions, where the labels are.
    """

    def __init__(self, setting: MQARSetting, shape: ModelShape, num_train: int, num_test: int,
                 eval_batch_size: int = 256, tests: tuple[MQARSetting, ...] = (),
                 num_valid: int = 0, mix: tuple[MQARSetting, ...] = ()) -> None:
        self.setting = setting
        # `mix`: more training settings of the same length; the training examples are split
        # evenly over (setting, *mix), as Zoology trains on several pair counts at once.
        self.mix = tuple(mix)
        self.tests = tuple(tests) or (setting,)
        self.shape = shape
        self.num_train = num_train
        self.num_test = num_test
        self.num_valid = num_valid
        self.eval_batch_size = eval_batch_size
        pairs = "+".join(str(t.num_kv_pairs) for t in (setting, *self.mix))
        self.name = f"mqar-T{setting.seq_len}-kv{pairs}-V{setting.vocab_size}"
        if self.tests != (setting,):
            self.name += "-test-" + "+".join(setting_label(t) for t in self.tests)
        self.metric = Metric("accuracy", higher_is_better=True)
        if any(t.vocab_size != setting.vocab_size for t in (*self.tests, *self.mix)):
            raise ValueError("MQAR test settings must share the training vocabulary")
        if any(t.seq_len != setting.seq_len for t in self.mix):
            raise ValueError("MQAR training settings must share one sequence length")
        if self.mix and num_train % (1 + len(self.mix)):
            raise ValueError(f"{num_train} training examples do not split evenly over "
                             f"{1 + len(self.mix)} training settings")

    @property
    def vocab_size(self) -> int:
        return self.setting.vocab_size

    @property
    def state_seq_len(self) -> int:
        return max(t.seq_len for t in (self.setting, *self.tests))

    def definition(self) -> dict:
        definition = {"task": "mqar", "train": vars(self.setting),
                      "tests": [vars(t) for t in self.tests], "num_train": self.num_train,
                      "num_test": self.num_test, "num_valid": self.num_valid,
                      "shape": shape_json(self.shape)}
        if self.mix:
            definition["mix"] = [vars(t) for t in self.mix]
        return definition

    def make_data(self, seed: int) -> MQARData:
        def splits(stream: str, count: int) -> dict[str, TokenSplit]:
            return {setting_label(t): generate_mqar(t, count, seed, f"{stream}-{setting_label(t)}")
                    for t in self.tests} if count else {}

        return MQARData(train=self._train_split(seed), test=splits("test", self.num_test),
                        valid=splits("valid", self.num_valid))

    def _train_split(self, seed: int) -> TokenSplit:
        if not self.mix:
            return generate_mqar(self.setting, self.num_train, seed, "train")
        each = self.num_train // (1 + len(self.mix))
        parts = [generate_mqar(t, each, seed, f"train-{setting_label(t)}")
                 for t in (self.setting, *self.mix)]
        # Interleaved, so that a prefix of the split holds every setting in equal parts.
        inputs = torch.stack([p.inputs for p in parts], dim=1).reshape(-1, self.setting.seq_len)
        labels = torch.stack([p.labels for p in parts], dim=1).reshape(-1, self.setting.seq_len)
        return TokenSplit(inputs, labels)

    def build_model(self, mixer: MixerSpec, shape: ModelShape) -> nn.Module:
        config = linarch_config(mixer, shape, self.setting.vocab_size)
        return LinarchForCausalLM(config, layer_cls=mixer.layer_cls)

    def batches(self, data: MQARData, batch_size: int, generator: torch.Generator):
        return _epochs(data.train, batch_size, generator)

    def loss(self, model, batch):
        return _labelled_loss(model, batch)

    def evaluate(self, model, data: MQARData, device) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for prefix, splits in (("", data.test), ("valid_", data.valid)):
            accuracies, losses = [], []
            for label, split in splits.items():
                preds, golds, loss = _labelled_eval(model, split, device, self.eval_batch_size)
                accuracies.append(query_accuracy(preds, golds))
                losses.append(loss)
                if len(splits) > 1:
                    metrics[f"{prefix}accuracy@{label}"] = accuracies[-1]
            if accuracies:
                metrics[f"{prefix}accuracy"] = sum(accuracies) / len(accuracies)
                metrics[f"{prefix}loss"] = sum(losses) / len(losses)
        return metrics


@dataclass(frozen=True)
class MADData:
    train: TokenSplit
    test: TokenSplit
    valid: TokenSplit


class MADProblem(Problem):
    """One MAD task; compression trains the autoencoder backbone."""

    def __init__(self, setting: MADSetting, shape: ModelShape, eval_batch_size: int = 128) -> None:
        self.setting = setting
        self.shape = shape
        self.eval_batch_size = eval_batch_size
        self.name = f"mad-{setting.task.value}"
        self.metric = Metric("accuracy", higher_is_better=True)

    @property
    def vocab_size(self) -> int:
        return self.setting.vocab_size

    @property
    def state_seq_len(self) -> int:
        return self.setting.seq_len

    def definition(self) -> dict:
        setting = {k: (v.value if isinstance(v, enum.Enum) else v)
                   for k, v in vars(self.setting).items()}
        return {"task": "mad", "setting": setting, "shape": shape_json(self.shape)}

    def make_data(self, seed: int) -> MADData:
        """Training examples, and test examples split in two: the first half validates (what a
        learning-rate choice may look at), the second is the test set."""
        s = self.setting
        held_out = generate_mad(s, 2 * s.num_test_examples, seed, training=False)
        half = s.num_test_examples
        return MADData(
            train=generate_mad(s, s.num_train_examples, seed, training=True),
            test=held_out.batch(torch.arange(half, 2 * half)),
            valid=held_out.batch(torch.arange(half)),
        )

    def build_model(self, mixer: MixerSpec, shape: ModelShape) -> nn.Module:
        config = linarch_config(mixer, shape, self.setting.vocab_size)
        if self.setting.autoencoder:
            return MixerAutoEncoder(config, layer_cls=mixer.layer_cls)
        return LinarchForCausalLM(config, layer_cls=mixer.layer_cls)

    def batches(self, data: MADData, batch_size: int, generator: torch.Generator):
        return _epochs(data.train, batch_size, generator)

    def loss(self, model, batch):
        if isinstance(model, MixerAutoEncoder):
            logits, aux = model(batch.inputs)
            return F.cross_entropy(logits.flatten(0, 1).float(), batch.labels.flatten(),
                                   ignore_index=IGNORE), aux
        return _labelled_loss(model, batch)

    @torch.no_grad()
    def evaluate(self, model, data: MADData, device) -> dict[str, float]:
        metrics = self._evaluate_split(model, data.test, device)
        valid = self._evaluate_split(model, data.valid, device)
        return {**metrics, **{f"valid_{k}": v for k, v in valid.items()}}

    def _evaluate_split(self, model, split: TokenSplit, device) -> dict[str, float]:
        v = self.setting.vocab_size
        if not isinstance(model, MixerAutoEncoder):
            preds, golds, loss = _labelled_eval(model, split, device, self.eval_batch_size)
            return {"accuracy": macro_accuracy(preds, golds, v), "loss": loss}
        preds, golds, nll, count = [], [], 0.0, 0
        for start in range(0, len(split), self.eval_batch_size):
            inputs = split.inputs[start: start + self.eval_batch_size].to(device)
            labels = split.labels[start: start + self.eval_batch_size].to(device)
            with autocast(device):
                logits, _ = model(inputs)
            logits = logits.float()
            nll += float(F.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                         ignore_index=IGNORE, reduction="sum"))
            count += int((labels != IGNORE).sum())
            preds.append(logits.argmax(-1).cpu())
            golds.append(labels.cpu())
        accuracy = macro_accuracy(torch.cat(preds), torch.cat(golds), v)
        return {"accuracy": accuracy, "loss": nll / max(count, 1)}


class LMProblem(Problem):
    """Next-token prediction on text; reports validation loss (nats/token) and bits per byte."""

    def __init__(self, text: TextSource, shape: ModelShape, seq_len: int,
                 val_windows: int = 64, eval_batch_size: int = 16) -> None:
        self.text = text
        self.shape = shape
        self.seq_len = seq_len
        self.val_windows = val_windows
        self.eval_batch_size = eval_batch_size
        self.name = f"lm-{text.source}-{text.tokenizer}"
        self.metric = Metric("val_loss", higher_is_better=False)

    @property
    def vocab_size(self) -> int:
        return cached_corpus(self.text).vocab_size

    @property
    def state_seq_len(self) -> int:
        return self.seq_len

    def definition(self) -> dict:
        return {"task": "lm", "text": vars(self.text),
                "corpus": cached_corpus(self.text).fingerprint, "seq_len": self.seq_len,
                "val_windows": self.val_windows, "shape": shape_json(self.shape)}

    def make_data(self, seed: int) -> TokenCorpus:
        return cached_corpus(self.text)

    def build_model(self, mixer: MixerSpec, shape: ModelShape) -> nn.Module:
        corpus = cached_corpus(self.text)
        config = linarch_config(mixer, shape, corpus.vocab_size)
        config.eos_token_id = corpus.eos_id
        config.bos_token_id = corpus.eos_id
        return LinarchForCausalLM(config, layer_cls=mixer.layer_cls)

    def batches(self, data: TokenCorpus, batch_size: int, generator: torch.Generator):
        while True:
            windows = random_windows(data.train, self.seq_len + 1, batch_size, generator)
            yield TokenSplit(windows[:, :-1], windows[:, 1:])

    def loss(self, model, batch):
        return _labelled_loss(model, batch)

    def save_artifacts(self, directory: Path) -> None:
        load_tokenizer(self.text.tokenizer).save_pretrained(directory)

    @torch.no_grad()
    def evaluate(self, model, data: TokenCorpus, device) -> dict[str, float]:
        """Loss on the validation windows; the windows right after them (as many, where the
        held-out text has room) give `valid_val_loss`, what a learning-rate choice looks at."""
        windows = tiled_windows(data.val, self.seq_len + 1, 2 * self.val_windows)
        test, valid = windows[: self.val_windows], windows[self.val_windows:]
        metrics = self._evaluate_windows(model, test, data, device)
        if len(valid):
            metrics["valid_val_loss"] = self._evaluate_windows(model, valid, data,
                                                               device)["val_loss"]
        return metrics

    def _evaluate_windows(self, model, windows: torch.Tensor, data: TokenCorpus,
                          device) -> dict[str, float]:
        nll, count, nbytes = 0.0, 0, 0
        for start in range(0, windows.shape[0], self.eval_batch_size):
            chunk = windows[start: start + self.eval_batch_size].to(device)
            inputs, targets = chunk[:, :-1], chunk[:, 1:]
            with autocast(device):
                hidden = model.model(input_ids=inputs).last_hidden_state
            logits = model.lm_head(hidden).float()
            nll += float(F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum"))
            count += targets.numel()
            nbytes += int(data.token_bytes.to(device)[targets].sum())
        loss = nll / count
        return {
            "val_loss": loss,
            "bits_per_byte": nll / (math.log(2) * max(nbytes, 1)),
            "perplexity": math.exp(min(loss, 50.0)),
        }


@lru_cache(maxsize=4)
def cached_corpus(text: TextSource) -> TokenCorpus:
    """Tokenised text, shared by every seed and mixer of a process."""
    return load_corpus(text)


def _epochs(split: TokenSplit, batch_size: int, generator: torch.Generator):
    """Minibatches of a fixed training set: each example once per epoch, then reshuffle."""
    order = torch.empty(0, dtype=torch.long)
    while True:
        while order.numel() < batch_size:
            order = torch.cat([order, torch.randperm(len(split), generator=generator)])
        index, order = order[:batch_size], order[batch_size:]
        yield split.batch(index)
