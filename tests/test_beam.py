"""Beam search in `nbnets sample --beam K` (runner.charlm.beam): greedy at K = 1, the more probable string
where greedy misses it, log-probabilities that a separate forward pass confirms, and the CLI's refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from numbanets.data.text import Vocabulary
from numbanets.nn.models import CharLM
from runner.charlm import beam, checkpoint
from runner.charlm.sample import generate
from runner.cli import main

CHARS = "abcdefgh \n"


def _random_model(cell="lstm", dtype=np.float64, seed=3):
    model = CharLM(len(CHARS), 16, 2, cell=cell, rng=np.random.default_rng(seed), dtype=dtype, init="normal",
                   init_scale=1.0)
    return model.eval()


def _hand_built():
    """A one-layer tanh RNN whose hidden state is the one-hot of the last character (w_ih = 30 I, w_hh = 0,
    so h = tanh(30) e_c = e_c in float64), and a read-out whose column c holds log p(next | last = c):

        after 'c': a 0.5, b 0.4, c 0.1       after 'a': uniform       after 'b': c 0.9, a 0.05, b 0.05

    From the prime "c", greedy takes 'a' (0.5) and then 'a' (1/3, the first of a tie): p("aa") = 1/6;
    the most probable two characters are "bc": 0.4 * 0.9 = 0.36."""
    model = CharLM(3, 3, 1, cell="rnn", rng=np.random.default_rng(0), dtype=np.float64)
    table = np.log(np.array([[1 / 3, 1 / 3, 1 / 3], [0.05, 0.05, 0.9], [0.5, 0.4, 0.1]]))  # row: last char a, b, c
    model.load_state_dict({"rnn.l0.w_ih": 30.0 * np.eye(3), "rnn.l0.w_hh": np.zeros((3, 3)), "rnn.l0.b": np.zeros(3),
                           "head.w": table.T.copy(), "head.b": np.zeros(3)})
    return model.eval(), Vocabulary("abc")


def _log_prob(model, vocab, prime, text):
    """sum of log p(c_i | prime, c_1 .. c_{i-1}) by one forward pass over the whole string (T, 1)."""
    ids = vocab.encode(prime + text)
    logits, _ = model.forward(ids.reshape(-1, 1))
    logp = beam.log_softmax(np.asarray(logits))
    return float(sum(logp[t, ids[t + 1]] for t in range(len(prime) - 1, len(ids) - 1)))


def test_greedy_misses_the_most_probable_string_and_beam_search_finds_it():
    model, vocab = _hand_built()
    assert generate(model, vocab, "c", 2, 0.0, 0, np.random.default_rng(0)) == "caa"
    (one,) = beam.search(model, vocab, "c", 2, beam=1)
    assert one.text == "aa" and one.log_prob == pytest.approx(math.log(0.5 / 3), rel=1e-12)
    best, second = beam.search(model, vocab, "c", 2, beam=2, n_best=2)
    assert best.text == "bc" and best.log_prob == pytest.approx(math.log(0.36), rel=1e-12)
    assert second.text == "aa" and second.log_prob < best.log_prob


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_beam_1_is_exactly_temperature_0(cell):
    model, vocab = _random_model(cell, np.float32), Vocabulary(CHARS)
    greedy = generate(model, vocab, "ab", 60, 0.0, 0, np.random.default_rng(0))
    (one,) = beam.search(model, vocab, "ab", 60, beam=1)
    assert "ab" + one.text == greedy


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_reported_log_probabilities_equal_a_separate_forward_pass(cell):
    model, vocab = _random_model(cell), Vocabulary(CHARS)
    hyps = beam.search(model, vocab, "ha", 25, beam=5, n_best=5)
    assert len(hyps) == 5 and len({h.text for h in hyps}) == 5
    assert [h.log_prob for h in hyps] == sorted((h.log_prob for h in hyps), reverse=True)
    for h in hyps:
        assert h.length == 25
        assert h.log_prob == pytest.approx(_log_prob(model, vocab, "ha", h.text), rel=1e-10)


def test_stop_characters_end_hypotheses_ranked_with_the_length_penalty():
    model, vocab = _random_model(), Vocabulary(CHARS)
    for alpha in (0.0, 1.5):
        hyps = beam.search(model, vocab, "a", 30, beam=6, n_best=6, length_penalty_alpha=alpha, stop="e ")
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert h.score == pytest.approx(h.log_prob / beam.length_penalty(h.length, alpha), rel=1e-12)
            assert h.log_prob == pytest.approx(_log_prob(model, vocab, "a", h.text), rel=1e-10)
            ended = h.text[-1] in "e "
            assert ended or h.length == 30
            assert not any(c in "e " for c in h.text[:-1])  # nothing goes on after a stop character
    assert beam.length_penalty(7, 0.0) == 1.0 and beam.length_penalty(1, 1.0) == 1.0


def test_search_refuses_bad_arguments():
    model, vocab = _random_model(), Vocabulary(CHARS)
    with pytest.raises(ValueError, match="--beam must be >= 1"):
        beam.search(model, vocab, "a", 5, beam=0)
    with pytest.raises(ValueError, match="--n-best must be between 1 and --beam"):
        beam.search(model, vocab, "a", 5, beam=2, n_best=3)
    with pytest.raises(ValueError, match="--stop has characters"):
        beam.search(model, vocab, "a", 5, beam=2, stop="z")


# --------------------------------------------------------------------------- nbnets sample --beam

@pytest.fixture
def checkpoint_file(tmp_path):
    model = _random_model(dtype=np.float32)
    arrays, meta = checkpoint.weights(model, 0, CHARS, "test")
    from numbanets.checkpoint import save

    save(tmp_path / "model.npz", arrays, meta)
    return str(tmp_path / "model.npz")


def _sample(*args):
    return CliRunner().invoke(main, ["sample", *args])


def test_cli_beam_prints_the_best_and_the_n_best_with_log_probabilities(checkpoint_file):
    greedy = _sample(checkpoint_file, "--prime", "ab", "--length", "40", "--temperature", "0")
    one = _sample(checkpoint_file, "--prime", "ab", "--length", "40", "--beam", "1")
    assert greedy.exit_code == one.exit_code == 0 and one.output == greedy.output
    three = _sample(checkpoint_file, "--prime", "ab", "--length", "20", "--beam", "4", "--n-best", "3")
    assert three.exit_code == 0, three.output
    heads = [line for line in three.output.splitlines() if line.startswith("=== ")]
    assert [h.split(":")[0] for h in heads] == ["=== 1", "=== 2", "=== 3"]
    logps = [float(h.split("log-probability ")[1].split()[0]) for h in heads]
    assert logps == sorted(logps, reverse=True)


@pytest.mark.parametrize("args, message", [
    (["--beam", "0"], "Invalid value for '--beam'"),
    (["--beam", "2", "--temperature", "0.5"], "--temperature does not apply"),
    (["--beam", "2", "--top-k", "3"], "--top-k does not apply"),
    (["--n-best", "2"], "need --beam K"),
    (["--beam", "2", "--n-best", "3"], "--n-best must be between 1 and --beam (2)"),
])
def test_cli_refuses_bad_beam_options_in_one_line(checkpoint_file, args, message):
    result = _sample(checkpoint_file, "--length", "5", *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
