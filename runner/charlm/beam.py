"""Beam search for `nbnets sample --beam K`: the most probable continuations, not a random one.

    hypotheses = search(model, vocab, prime, length, beam=K, n_best=N, length_penalty=a, stop="")

Every step keeps the K continuations with the largest sum of log-probabilities
log p(c_1 .. c_t | prime) = sum_i log softmax(logits_i)[c_i]. The K beams
advance as one batch of K rows through the model's own kernels: one forward
of ids (1, K) per character gives the K rows of logits; the only Python per
character is the top-K selection over the K x V candidates and the reordering
of the hidden state's rows by the beams' parents.

Ties in the scores go to the lower (beam, character) index, the order np.argmax
uses, so `--beam 1` is exactly greedy decoding (`--temperature 0`).

Hypotheses end after `length` characters, or earlier when `stop` is given and
they emit one of its characters (for instance a newline: the most probable
line). Finished hypotheses of different lengths are ranked by
log p / lp(n) with GNMT's length penalty lp(n) = ((5 + n) / 6) ** a (Wu et al.
2016); a = 0 ranks by the log-probability itself. Without `stop` every
hypothesis has `length` characters and the penalty does not change the order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numbanets.device import is_device_array, to_device, to_host


@dataclass(frozen=True)
class Hypothesis:
    text: str            # the generated characters (without the prime)
    log_prob: float      # sum of their log-probabilities given the prime (nats)
    score: float         # log_prob / lp(len(text)): what ranks the hypotheses

    @property
    def length(self) -> int:
        return len(self.text)


def length_penalty(n: int, alpha: float) -> float:
    """GNMT's lp(n) = ((5 + n) / 6) ** alpha; 1 for alpha = 0."""
    return ((5.0 + n) / 6.0) ** alpha


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log softmax in float64 (logits (K, V))."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _rows(state, index: np.ndarray):
    """The hidden state (per layer h, or (h, c)) restricted to the rows `index`, in that order."""
    def take(a):
        if is_device_array(a):  # K x H numbers: a round trip through the host is the simple gather
            return to_device(np.ascontiguousarray(to_host(a)[index]))
        return np.ascontiguousarray(a[index])

    return [tuple(take(a) for a in s) if isinstance(s, tuple) else take(s) for s in state]


def search(model, vocab, prime: str, length: int, beam: int, n_best: int = 1, length_penalty_alpha: float = 0.0,
           stop: str = "") -> list[Hypothesis]:
    """The n_best most probable continuations of `prime` (best first) found with `beam` beams."""
    if beam < 1:
        raise ValueError(f"--beam must be >= 1, got {beam}")
    if not 1 <= n_best <= beam:
        raise ValueError(f"--n-best must be between 1 and --beam ({beam}), got {n_best}")
    if not prime:
        raise ValueError("--prime must not be empty")
    for what, text in (("--prime", prime), ("--stop", stop)):
        missing = vocab.unknown(text)
        if missing:
            raise ValueError(f"{what} has characters that are not in the model's vocabulary: "
                             f"{' '.join(repr(c) for c in missing)}")
    stop_ids = np.array(sorted({vocab.index[c] for c in stop}), dtype=np.int64)
    logits, state = model.next_logits(vocab.encode(prime), None)
    logp = log_softmax(logits.reshape(1, -1))           # (1, V): the one beam the prime gives
    scores = np.zeros(1)                                 # log p of each live beam
    seqs: list[list[int]] = [[]]
    finished: list[tuple[float, list[int]]] = []
    for t in range(length):
        cand = scores[:, None] + logp                    # (k, V)
        order = np.argsort(-cand, axis=None, kind="stable")[: 2 * beam]
        parents, chars, live_scores, done = [], [], [], 0
        for flat in order:
            parent, char = divmod(int(flat), logp.shape[1])
            if not np.isfinite(cand[parent, char]):
                break
            if stop_ids.size and char in stop_ids:
                finished.append((float(cand[parent, char]), seqs[parent] + [char]))
                done += 1
            else:
                parents.append(parent)
                chars.append(char)
                live_scores.append(cand[parent, char])
            if len(parents) == beam:
                break
        seqs = [seqs[p] + [c] for p, c in zip(parents, chars)]
        scores = np.array(live_scores)
        if not seqs or t + 1 == length:
            break
        state = _rows(state, np.array(parents))
        ids = np.array(chars, dtype=np.int64).reshape(1, -1)   # one time step of the K live beams
        logits, state = model.forward(ids, state)
        logp = log_softmax(to_host(logits))
    finished.extend((float(s), q) for s, q in zip(scores, seqs))
    ranked = sorted(
        (Hypothesis(vocab.decode(q), s, s / length_penalty(len(q), length_penalty_alpha)) for s, q in finished),
        key=lambda h: -h.score,
    )
    return ranked[:n_best]
