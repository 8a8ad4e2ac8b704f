"""nbnets memory, the tasks: sequences whose answer depends on one early step, generated on the fly.

recall (the lecture's "I live in India ... I visit Mumbai"), symbols as integer ids:

    ids 0 .. K-1           the K contexts ("India", "France", ...)
    ids K .. K+F-1         the F fillers ("the", "of", ...)
    id  K+F                the query "?"
    id  K+F+1              end of line (with forget)

    x (T, N) ids, T = distance + 2: the context, `distance` fillers, the query;
    target (N,) = the index of the context's answer (context i -> answer i: "Mumbai", "Paris", ...).

With `forget`, half of the sequences hold, somewhere inside the fillers, an end
of line followed by a new context: the answer is the latest context's. Chance
accuracy is 1/K; the loss is taken at the query only.

adding (Hochreiter & Schmidhuber 1997, experiment 4; Le, Jaitly & Hinton 2015):

    x (T, N, 2) float32, T = distance: channel 0 a value in U(0, 1), channel 1 a
    marker, 1 at exactly two steps (one in each half); target (N,) the sum of the
    two marked values. Predicting the mean (1) scores an MSE of 1/6.
"""

from __future__ import annotations

import numpy as np

TASKS = ("recall", "adding")
CONTEXT_WORDS = ("India", "France", "Japan", "Italy", "Egypt", "Peru", "Kenya", "Canada", "Spain", "China",
                 "Chile", "Ghana", "Nepal", "Cuba", "Iran", "Mali")
ANSWER_WORDS = ("Mumbai", "Paris", "Tokyo", "Rome", "Cairo", "Lima", "Nairobi", "Toronto", "Madrid", "Beijing",
                "Santiago", "Accra", "Kathmandu", "Havana", "Tehran", "Bamako")
FILLER_WORDS = ("the", "of", "and", "a", "to", "in", "is", "was", "it", "for", "on", "with", "as", "at", "by",
                "this", "we", "you", "from", "or")
ADDING_MEAN_MSE = 1.0 / 6.0  # the MSE of always predicting 1, the mean of the target


class Recall:
    """The recall task with `symbols` contexts and `fillers` filler symbols."""

    def __init__(self, distance: int, symbols: int = 8, fillers: int = 10, forget: bool = False):
        if distance < 1:
            raise ValueError(f"the distance must be >= 1, got {distance}")
        if symbols < 2:
            raise ValueError(f"--symbols must be >= 2 (K = 1 leaves nothing to remember), got {symbols}")
        if fillers < 1:
            raise ValueError(f"--fillers must be >= 1, got {fillers}")
        if forget and distance < 3:
            raise ValueError(f"--forget needs a distance >= 3 (room for an end of line and a new context), "
                             f"got {distance}")
        self.distance, self.symbols, self.fillers, self.forget = distance, symbols, fillers, forget
        self.query, self.eol = symbols + fillers, symbols + fillers + 1
        self.vocab = symbols + fillers + 2
        self.outputs = symbols
        self.steps = distance + 2

    def batch(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(x (T, N) int64 ids, target (N,) int64)."""
        T, K = self.steps, self.symbols
        x = np.empty((T, n), dtype=np.int64)
        context = rng.integers(0, K, size=n)
        x[0] = context
        x[1:T - 1] = K + rng.integers(0, self.fillers, size=(T - 2, n))
        x[T - 1] = self.query
        target = context.copy()
        if self.forget:
            switch = rng.random(n) < 0.5
            where = rng.integers(1, T - 2, size=n)        # the end of line; the new context follows it
            new = rng.integers(0, K, size=n)
            cols = np.flatnonzero(switch)
            x[where[cols], cols] = self.eol
            x[where[cols] + 1, cols] = new[cols]
            target[cols] = new[cols]
        return x, target

    def render(self, x: np.ndarray, target: int) -> str:
        """One sequence (T,) in words: `India the of and ... ? -> Mumbai`."""
        def word(i):
            i = int(i)
            if i < self.symbols:
                return CONTEXT_WORDS[i % len(CONTEXT_WORDS)] + ("" if i < len(CONTEXT_WORDS) else f"{i}")
            if i < self.query:
                f = i - self.symbols
                return FILLER_WORDS[f % len(FILLER_WORDS)] + ("" if f < len(FILLER_WORDS) else f"{f}")
            return "?" if i == self.query else "<eol>"

        answer = ANSWER_WORDS[target % len(ANSWER_WORDS)] + ("" if target < len(ANSWER_WORDS) else f"{target}")
        return " ".join(word(i) for i in x) + f" -> {answer}"


class Adding:
    """The adding problem over `distance` steps."""

    def __init__(self, distance: int):
        if distance < 2:
            raise ValueError(f"the adding problem needs a distance >= 2 (two marked steps), got {distance}")
        self.distance = distance
        self.steps = distance
        self.vocab = 2
        self.outputs = 1

    def batch(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(x (T, N, 2) float32, target (N,) float32)."""
        T = self.steps
        half = T // 2
        x = np.zeros((T, n, 2), dtype=np.float32)
        x[:, :, 0] = rng.random((T, n), dtype=np.float32)
        first = rng.integers(0, half, size=n)
        second = rng.integers(half, T, size=n)
        cols = np.arange(n)
        x[first, cols, 1] = 1.0
        x[second, cols, 1] = 1.0
        target = x[first, cols, 0] + x[second, cols, 0]
        return x, target.astype(np.float32)

    def render(self, x: np.ndarray, target: float) -> str:
        marked = [f"[{v:.2f}]" if m else f"{v:.2f}" for v, m in x]
        return " ".join(marked) + f" -> {target:.3f}"


def make_task(name: str, distance: int, symbols: int = 8, fillers: int = 10, forget: bool = False):
    if name == "recall":
        return Recall(distance, symbols, fillers, forget)
    if name == "adding":
        if forget:
            raise ValueError("--forget belongs to the recall task")
        return Adding(distance)
    raise ValueError(f"unknown --task {name!r}; choose from {', '.join(TASKS)}")
