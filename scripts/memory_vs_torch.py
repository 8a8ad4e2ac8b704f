"""nbnets memory's recall runs against the same runs in PyTorch: is a cell's result the cell's, or the kernels'?

    python scripts/memory_vs_torch.py --cell lstm --distance 30 --forget-bias 1 --seeds 0,1,2
    python scripts/memory_vs_torch.py --cell rnn-tanh --distance 20

Trains numbanets (runner.memory.train.fit) and a PyTorch model built the same
way (torch.nn.LSTM / torch.nn.RNN, PyTorch's uniform init +-1/sqrt(H), the LSTM's
bias_hh zeroed and the forget bias added to bias_ih; rnn-sigmoid written out
step by step) on the same generated batches: Adam, global-norm clipping, one
read-out of the last state, the held-out set evaluated every --eval-every steps.
The initial weights differ (each library draws its own), so the two agree in
distribution, not digit for digit. Prints, per seed, the step at which each
solved the task (test accuracy >= 0.99) or its final accuracy.

torch is an optional peer: this script needs it, numbanets does not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.memory.tasks import Recall  # noqa: E402
from runner.memory.train import RunSpec, fit  # noqa: E402


def torch_run(torch, spec: RunSpec):
    task = Recall(spec.distance, spec.symbols, spec.fillers, spec.forget)
    torch.manual_seed(spec.seed)
    H, V = spec.hidden, task.vocab
    kind = spec.cell.split("-")[-1]
    if spec.cell == "lstm":
        rnn = torch.nn.LSTM(V, H)
        with torch.no_grad():
            rnn.bias_hh_l0.zero_()
            rnn.bias_ih_l0[H:2 * H] += spec.forget_bias
        step_fn = None
    elif kind in ("tanh", "relu"):
        rnn = torch.nn.RNN(V, H, nonlinearity=kind)
        if kind == "relu":
            with torch.no_grad():
                rnn.weight_hh_l0.copy_(torch.eye(H))
                rnn.bias_hh_l0.zero_()
                rnn.bias_ih_l0.zero_()
        step_fn = None
    else:  # rnn-sigmoid: torch.nn.RNN has no sigmoid; written out step by step
        rnn = torch.nn.RNNCell(V, H)
        step_fn = torch.sigmoid
    readout = torch.nn.Linear(H, task.outputs)
    params = list(rnn.parameters()) + list(readout.parameters())
    optimizer = torch.optim.Adam(params, lr=spec.lr)

    def forward(ids):
        x = torch.nn.functional.one_hot(torch.as_tensor(ids), V).float()
        if step_fn is None:
            return readout(rnn(x)[0][-1])
        h = torch.zeros(x.shape[1], H)
        for t in range(x.shape[0]):
            h = step_fn(x[t] @ rnn.weight_ih.T + rnn.bias_ih + h @ rnn.weight_hh.T + rnn.bias_hh)
        return readout(h)

    train_rng = np.random.default_rng([spec.seed, 1])
    x_test, y_test = task.batch(np.random.default_rng([spec.seed, 2]), spec.test_size)
    y_test = torch.as_tensor(y_test)
    acc = 0.0
    for step in range(1, spec.max_steps + 1):
        x, y = task.batch(train_rng, spec.batch_size)
        loss = torch.nn.functional.cross_entropy(forward(x), torch.as_tensor(y))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, spec.clip)
        optimizer.step()
        if step % spec.eval_every == 0:
            with torch.no_grad():
                acc = (forward(x_test).argmax(1) == y_test).float().mean().item()
            if acc >= spec.solved:
                return step, acc
    return None, acc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cell", default="lstm", choices=("rnn-tanh", "rnn-relu", "rnn-sigmoid", "lstm"))
    parser.add_argument("--distance", type=int, default=30)
    parser.add_argument("--forget-bias", type=float, default=1.0)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=100)
    args = parser.parse_args(argv)
    import torch  # the optional peer

    torch.set_num_threads(1)
    print(f"recall, {args.cell}, distance {args.distance}, forget bias {args.forget_bias:g}, "
          f"at most {args.max_steps} steps: the step solved (or the final test accuracy)")
    for seed in (int(s) for s in args.seeds.split(",")):
        spec = RunSpec(args.cell, "recall", args.distance, seed, max_steps=args.max_steps,
                       eval_every=args.eval_every, forget_bias=args.forget_bias)
        _, ours = fit(spec)
        theirs, acc = torch_run(torch, spec)
        show = (lambda solved, final: f"solved at {solved}" if solved else f"not solved ({final:.3f})")
        print(f"seed {seed}:  numbanets {show(ours['steps_to_solve'], ours['final_metric']):<22} "
              f"torch {show(theirs, acc)}")


if __name__ == "__main__":
    main()
