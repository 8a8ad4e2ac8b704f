"""train-charlm's text: the vocabulary, the train/validation split and the validation streams.

    text (chars) -> ids (L,) int -> train ids (L - n_val,) | val ids (n_val,), the last val_frac of the text
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numbanets.data.text import BatchStream, Corpus, Vocabulary, unigram_entropy


@dataclass
class Data:
    corpus: Corpus
    vocab: Vocabulary
    train_ids: np.ndarray
    val_ids: np.ndarray
    unigram_entropy: float

    def describe(self) -> dict:
        return {
            **self.corpus.describe(),
            "vocab_size": len(self.vocab),
            "train_chars": int(self.train_ids.size),
            "val_chars": int(self.val_ids.size),
            "unigram_entropy_nats": self.unigram_entropy,
        }


def prepare_data(corpus: Corpus, val_frac: float, batch_size: int, seq_len: int,
                 vocab: Vocabulary | None = None) -> Data:
    """Vocabulary, train/validation split (the last `val_frac` of the text) and size checks.

    ValueError when the text is too short for one batch of batch_size x seq_len
    in the training part plus one window of seq_len in the validation part.
    """
    vocab = vocab or Vocabulary.from_text(corpus.text)
    ids = vocab.encode(corpus.text)
    n_val = int(round(len(ids) * val_frac))
    need_train = batch_size * seq_len + 1
    need_val = seq_len + 1
    if len(ids) - n_val < need_train or n_val < need_val:
        need_total = max(need_train + need_val, int(math.ceil(need_train / (1 - val_frac))),
                         int(math.ceil(need_val / val_frac)))
        raise ValueError(
            f"corpus {corpus.name} has {len(ids)} characters: too short for one batch of "
            f"--batch-size {batch_size} x --seq-len {seq_len} plus a validation split of "
            f"--val-frac {val_frac} (needs at least {need_total} characters)"
        )
    train_ids, val_ids = ids[: len(ids) - n_val], ids[len(ids) - n_val:]
    # max: a one-symbol text sums to -0.0 (printed as -0.0000); entropy is never below 0
    return Data(corpus, vocab, train_ids, val_ids, max(0.0, unigram_entropy(train_ids, len(vocab))))


def val_stream(val_ids: np.ndarray, batch_size: int, seq_len: int) -> BatchStream:
    """The validation text as streams: batch_size of them, or fewer when it is short."""
    rows = max(1, min(batch_size, (len(val_ids) - 1) // seq_len))
    return BatchStream(val_ids, rows, seq_len)
