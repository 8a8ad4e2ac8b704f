"""numbanets.data.text: the built-in corpus, vocabularies, batching, bad corpora."""

import numpy as np
import pytest

from numbanets.data import text


def test_builtin_corpus_needs_no_file_and_is_large():
    corpus = text.builtin_corpus()
    assert corpus.name == text.BUILTIN_NAME
    assert len(corpus.text) > 500_000
    assert "def " in corpus.text and "import" in corpus.text
    assert corpus.describe()["sha256"] == corpus.sha256


def test_vocabulary_round_trip_and_unknown():
    vocab = text.Vocabulary.from_text("hello world")
    ids = vocab.encode("hello")
    assert vocab.decode(ids) == "hello"
    assert vocab.unknown("hexz!") == ["x", "z", "!"]
    with pytest.raises(ValueError, match="'x' 'z'"):
        vocab.encode("xz")


def test_unigram_entropy():
    ids = np.array([0, 1, 0, 1])
    assert text.unigram_entropy(ids, 2) == pytest.approx(np.log(2))


def test_batch_stream_continues_streams_and_wraps():
    ids = np.arange(101)
    stream = text.BatchStream(ids, batch_size=2, seq_len=5)
    assert stream.windows == 10  # 50 characters per stream
    x0, y0, wrapped0 = stream.next()
    x1, y1, wrapped1 = stream.next()
    assert wrapped0 and not wrapped1
    assert x0.shape == (5, 2)
    np.testing.assert_array_equal(x0[:, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(x0[:, 1], [50, 51, 52, 53, 54])
    np.testing.assert_array_equal(y0, x0 + 1)
    np.testing.assert_array_equal(x1[:, 0], [5, 6, 7, 8, 9])  # stream 0 continues
    for _ in range(8):
        stream.next()
    assert stream.next()[2]  # epoch wrapped
    resumed = text.BatchStream(ids, 2, 5, position=1)
    np.testing.assert_array_equal(resumed.next()[0], x1)


def test_batch_stream_too_short():
    with pytest.raises(ValueError, match="too short for one batch of 4 x 10"):
        text.BatchStream(np.arange(30), 4, 10)


def test_load_corpus_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        text.load_corpus(str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        text.load_corpus(str(empty))
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"abc\xe9def")
    with pytest.raises(ValueError, match="offset 3"):
        text.load_corpus(str(latin))
    assert text.load_corpus(str(latin), encoding="latin-1").text == "abc\xe9def"
