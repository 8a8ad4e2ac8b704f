"""`nbnets sample`: text from a trained character language model.

    nbnets sample results/train-charlm/<run>/ --prime "def " --length 500 --temperature 0.8

RUN_DIR picks the run's best.npz (lowest validation loss) when it exists, else
its checkpoint.npz; a path to a .npz file picks that file. Checkpoints hold
host arrays, so one trained on the GPU samples on the CPU.

Sampling: the prime is run through the network to set its hidden state; then
each next character is drawn from softmax(logits / temperature), restricted
to the `top_k` most likely characters when top_k > 0; temperature 0 takes the
most likely character (argmax). The same seed gives the same text.
`beam=K` runs beam search instead (runner.charlm.beam): the most probable
continuations, with their log-probabilities.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numbanets.data.text import Vocabulary
from numbanets.device import resolve
from numbanets.nn.models import CharLM
from runner.charlm import beam as beam_search
from runner.charlm import checkpoint


def default_prime(vocab: Vocabulary) -> str:
    """A newline when the vocabulary has one (start of a line), else its first character."""
    return "\n" if "\n" in vocab.index else vocab.chars[0]


def probabilities(logits: np.ndarray, temperature: float, top_k: int = 0) -> np.ndarray:
    """softmax(logits / temperature) in float64, zero outside the top_k largest (top_k > 0)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if top_k and top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= kth, z, -np.inf)
    z = z - z.max()
    p = np.exp(z)
    return p / p.sum()


def choose(logits: np.ndarray, temperature: float, top_k: int, rng: np.random.Generator) -> int:
    """The next character id: argmax for temperature 0, else a draw from `probabilities`."""
    if temperature == 0:
        return int(np.argmax(logits))
    p = probabilities(logits, temperature, top_k)
    # inverse CDF with one uniform draw: reproducible for a seed, whatever numpy does in choice()
    u = rng.random()
    idx = int(np.searchsorted(np.cumsum(p), u * p.sum(), side="right"))
    return min(idx, p.size - 1)


def generate(model, vocab: Vocabulary, prime: str, length: int, temperature: float,
             top_k: int, rng: np.random.Generator) -> str:
    """prime followed by `length` sampled characters."""
    if not prime:
        raise ValueError("--prime must not be empty")
    missing = vocab.unknown(prime)
    if missing:
        raise ValueError(
            f"--prime has characters that are not in the model's vocabulary: "
            f"{' '.join(repr(c) for c in missing)}"
        )
    ids = vocab.encode(prime)
    logits, state = model.next_logits(ids, None)
    out = []
    for _ in range(length):
        nxt = choose(logits, temperature, top_k, rng)
        out.append(nxt)
        logits, state = model.next_logits(np.array([nxt], dtype=np.int64), state)
    return prime + vocab.decode(out)


def checkpoint_path(source: str) -> Path:
    """The .npz that SOURCE names: a run folder's best.npz (else checkpoint.npz), or the file itself."""
    path = Path(source)
    if path.is_dir():
        for name in (checkpoint.BEST_FILE, "checkpoint.npz"):
            if (path / name).is_file():
                return path / name
        raise ValueError(f"{source} holds no best.npz or checkpoint.npz: not a train-charlm run folder")
    if path.suffix == ".json" and path.with_suffix(".npz").is_file():
        return path.with_suffix(".npz")
    if not path.exists():
        raise ValueError(f"{source} does not exist")
    return path


def load_model(source: str, device: str = "cpu"):
    """(model, vocabulary, meta) from a run folder or a checkpoint file, on `device`."""
    path = checkpoint_path(source)
    arrays, meta = checkpoint.load(path)
    config = meta["model"]
    try:
        vocab = Vocabulary(meta["vocab"])
        model = CharLM(**config, rng=np.random.default_rng(0))
        model.load_state_dict(checkpoint.params(arrays))
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} does not hold a usable character LM: {exc}") from None
    if len(vocab) != model.vocab_size:
        raise ValueError(f"{path}: the vocabulary has {len(vocab)} characters but the model {model.vocab_size}")
    if device != "cpu":
        model.to(device)
    return model.eval(), vocab, meta  # eval: no dropout


def run(source: str, prime: str | None = None, length: int = 500, temperature: float = 0.8, top_k: int = 0,
        seed: int = 0, device: str = "auto", beam: int | None = None, n_best: int = 1,
        length_penalty: float = 0.0, stop: str = "") -> str:
    """The text `nbnets sample` prints: a sample, or with `beam` the best continuation (the n_best best,
    each under a line with its log-probability, when n_best > 1)."""
    if not temperature >= 0:
        raise ValueError(f"--temperature must be >= 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"--top-k must be >= 0, got {top_k}")
    if beam is None and (n_best != 1 or length_penalty != 0.0 or stop):
        raise ValueError("--n-best, --length-penalty and --stop need --beam K")
    if beam is not None and beam < 1:
        raise ValueError(f"--beam must be >= 1, got {beam}")
    dev = resolve(device)
    model, vocab, meta = load_model(source, dev)
    if prime is None:
        prime = default_prime(vocab)
    if beam is None:
        return generate(model, vocab, prime, length, temperature, top_k, np.random.default_rng(seed))
    best = beam_search.search(model, vocab, prime, length, beam, n_best, length_penalty, stop)
    if n_best == 1:
        return prime + best[0].text
    return "\n\n".join(f"=== {i}: log-probability {h.log_prob:.6f} nats, {h.length} chars, score {h.score:.6f} ===\n"
                       f"{prime}{h.text}" for i, h in enumerate(best, 1))
