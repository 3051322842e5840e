"""The default byte-level tokenizer: token id = byte value, plus one end-of-text token.

It is a standard `PreTrainedTokenizerFast` (a BPE with the 256 byte symbols and no merges), so
`save_pretrained` writes an ordinary tokenizer.json that `AutoTokenizer` and lm-eval's hf
backend load with no custom code. Bits per byte are then exact: one token per byte.
"""

from __future__ import annotations

import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"
BYTE_VOCAB = 257  # 256 bytes + end of text


def _byte_symbols() -> dict[int, str]:
    """Byte -> printable character, the reversible map that byte-level BPEs use (GPT-2)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    symbols = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return symbols


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A fast tokenizer whose ids are the UTF-8 bytes of the text; EOS is id 256."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {symbol: b for b, symbol in _byte_symbols().items()}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=END_OF_TEXT, bos_token=END_OF_TEXT, pad_token=END_OF_TEXT
    )


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """"byte" for the byte tokenizer, else any name or path AutoTokenizer accepts."""
    if name == "byte":
        return byte_tokenizer()
    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {name!r} has no end-of-text token to separate documents")
    return tokenizer


def encode(tokenizer: PreTrainedTokenizerBase, text: str, is_bytes: bool) -> np.ndarray:
    """Token ids of `text`; the byte tokenizer's are read straight from the UTF-8 encoding."""
    if is_bytes:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    return np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)


def token_byte_lengths(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> np.ndarray:
    """UTF-8 bytes each token id stands for (0 for special tokens), for bits per byte.

    Read from the token strings, not from decoding ids one at a time (a lone byte of a
    multi-byte character decodes to a 3-byte replacement character): byte-level BPEs spell each
    byte as one symbol, SentencePiece spells byte fallbacks <0xNN> and spaces as U+2581.
    """
    symbols = {symbol: b for b, symbol in _byte_symbols().items()}
    backend = getattr(tokenizer, "backend_tokenizer", None)
    byte_level = "ByteLevel" in repr(getattr(backend, "decoder", None))
    special = set(tokenizer.all_special_ids)
    lengths = np.zeros(vocab_size, dtype=np.int64)
    count = min(vocab_size, len(tokenizer))
    for token_id, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(count)))):
        if token_id in special or token is None:
            continue
        if byte_level and all(ch in symbols for ch in token):
            lengths[token_id] = len(token)
        elif len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            lengths[token_id] = 1
        else:
            lengths[token_id] = len(token.replace("\u2581", " ").encode("utf-8"))
    return lengths
