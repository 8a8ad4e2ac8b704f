"""numbanets' character LSTM against PyTorch's, same init, same batches, same optimizer.

    python scripts/charlm_vs_torch.py --corpus /path/to/tinyshakespeare.txt --steps 2000

Builds the `nbnets train-charlm` trainer (runner.charlm.train.Trainer) with the given
settings, copies its initial weights into torch.nn.LSTM + torch.nn.Linear
(torch's bias_ih = numbanets' b; bias_hh = 0, kept at 0 by zeroing its
gradient, so both models have one bias per gate), and trains both, step by step
interleaved, on the same windows of the same BatchStream, the hidden state
carried across windows and reset at every new epoch, with the same RMSprop
(alpha 0.95, eps 1e-8), global-norm clipping (scale max_norm / norm, as
numbanets) and learning-rate schedule. Interleaving puts both under the same
machine load. Prints the validation losses of both (every --eval-every steps
and at the end) and the training speed of each in characters per second,
measured over the training steps alone (forward, backward, clipping, update).
glibc malloc's thresholds are fixed first, as `nbnets bench` fixes them
(--allocator default leaves them moving; see runner.common.allocator.fix_allocator).

torch is an optional peer: this script needs it, numbanets does not.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from numbanets.data.text import BatchStream, load_corpus  # noqa: E402
from runner.charlm import train as charlm  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default=None, help="UTF-8 text (default: the built-in corpus)")
    p.add_argument("--steps", type=int, default=2000, help="training steps of each model (default 2000)")
    p.add_argument("--max-time", type=float, default=None,
                   help="stop both after this many seconds of wall time (then evaluate and print as at the end)")
    p.add_argument("--eval-every", type=int, default=0, help="also compare val losses every N steps (0: end only)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-decay", type=float, default=0.97)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--val-frac", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for torch, numba and the BLAS, as `nbnets bench` sets them (default: leave all)")
    p.add_argument("--bench-steps", type=int, default=0,
                   help="after training, time this many more steps of each model alone, in 4 alternating blocks "
                        "(numbanets, torch, numbanets, ...): no interference between the two libraries' "
                        "thread pools, which interleaved steps have")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch's thread count when it should differ from --threads")
    p.add_argument("--csv", default=None, help="write per-step losses and times of both to this CSV")
    p.add_argument("--allocator", choices=("fixed", "default"), default="fixed",
                   help="fixed (default): glibc malloc's mmap and trim thresholds fixed, as `nbnets bench` fixes "
                        "them, so neither library's frees change the other's speed; default: glibc's own moving "
                        "thresholds, under which torch's interleaved steps ran ~30%% slower (50.6k against "
                        "66-72k chars/s) and its steps alone in a fresh process did not")
    return p.parse_args(argv)


class TorchCharLM:
    """torch.nn.LSTM + torch.nn.Linear with numbanets' CharLM weights copied in."""

    def __init__(self, torch, model, dtype):
        cfg = model.config()
        self.torch = torch
        self.vocab_size, self.hidden, self.layers = cfg["vocab_size"], cfg["hidden"], cfg["layers"]
        if cfg["cell"] != "lstm":
            raise SystemExit("this comparison covers --cell lstm only")
        self.dtype = dtype
        self.lstm = torch.nn.LSTM(self.vocab_size, self.hidden, self.layers).to(dtype)
        self.head = torch.nn.Linear(self.hidden, self.vocab_size).to(dtype)
        w = model.state_dict()
        with torch.no_grad():
            for k in range(self.layers):
                getattr(self.lstm, f"weight_ih_l{k}").copy_(torch.from_numpy(w[f"rnn.l{k}.w_ih"]))
                getattr(self.lstm, f"weight_hh_l{k}").copy_(torch.from_numpy(w[f"rnn.l{k}.w_hh"]))
                getattr(self.lstm, f"bias_ih_l{k}").copy_(torch.from_numpy(w[f"rnn.l{k}.b"]))
                getattr(self.lstm, f"bias_hh_l{k}").zero_()
            self.head.weight.copy_(torch.from_numpy(w["head.w"]))
            self.head.bias.copy_(torch.from_numpy(w["head.b"]))
        # numbanets has one bias per gate; torch's bias_hh stays a trainable parameter (torch's usual,
        # fastest path) but its gradient is zeroed before every update, so it stays 0 and the
        # arithmetic is numbanets' (two trained biases would move twice as fast)
        self.bias_hh = [getattr(self.lstm, f"bias_hh_l{k}") for k in range(self.layers)]
        hh = {id(p) for p in self.bias_hh}
        self.params = [p for p in list(self.lstm.parameters()) + list(self.head.parameters()) if id(p) not in hh]

    def loss(self, x, y, state):
        torch = self.torch
        xt = torch.nn.functional.one_hot(torch.from_numpy(np.ascontiguousarray(x)), self.vocab_size).to(self.dtype)
        out, state = self.lstm(xt, state)
        logits = self.head(out.reshape(-1, self.hidden))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.ascontiguousarray(y)).reshape(-1))
        return loss, state


def clip_(torch, params, max_norm):
    """numbanets' clipping: the global norm before clipping; grads *= max_norm / norm when above."""
    norm = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in params))
    if max_norm > 0 and norm > max_norm:
        for p in params:
            p.grad.mul_(max_norm / norm)
    return norm


def torch_step(torch, tm, opt, x, y, state, lr, clip):
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=False)
    loss, state = tm.loss(x, y, state)
    loss.backward()
    for p in tm.bias_hh:
        p.grad.zero_()
    norm = clip_(torch, tm.params, clip)
    opt.step()
    return loss.item(), norm, tuple(s.detach() for s in state)


def torch_eval(torch, tm, val: BatchStream) -> float:
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in val:
            loss, state = tm.loss(x, y, state)
            total += float(loss)
            count += 1
    return total / count


def main(argv=None):
    args = parse_args(argv)
    import torch

    from runner.common.allocator import fix_allocator
    from runner.common.threads import Threads

    print(fix_allocator() if args.allocator == "fixed" else "allocator: glibc's defaults (moving thresholds)")
    # numba's pool, the BLAS and torch at --threads, as `nbnets bench` sets them
    with Threads(args.threads, torch) if args.threads else contextlib.nullcontext():
        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        return compare(args, torch)


def compare(args, torch) -> int:
    """Train both models side by side, print the comparison; returns the exit code."""
    opts = charlm.validate({
        "corpus": args.corpus, "hidden": args.hidden, "layers": args.layers, "seq_len": args.seq_len,
        "batch_size": args.batch_size, "lr": args.lr, "lr_decay": args.lr_decay, "clip": args.clip,
        "val_frac": args.val_frac, "seed": args.seed, "steps": args.steps,
    })
    corpus = load_corpus(args.corpus)
    data = charlm.prepare_data(corpus, opts["val_frac"], opts["batch_size"], opts["seq_len"])
    dtype_np = np.dtype(args.dtype)
    dtype_t = torch.float32 if args.dtype == "float32" else torch.float64
    trainer = charlm.Trainer(opts, data, "cpu", dtype=dtype_np)
    tm = TorchCharLM(torch, trainer.model, dtype_t)
    opt = torch.optim.RMSprop(tm.params + tm.bias_hh, lr=opts["lr"], alpha=0.95, eps=1e-8)
    stream = BatchStream(data.train_ids, opts["batch_size"], opts["seq_len"])
    chars = trainer.chars_per_step

    print(f"corpus {corpus.name}: {len(corpus.text):,} chars, vocab {len(data.vocab)}, "
          f"unigram entropy {data.unigram_entropy:.4f} nats/char")
    print(f"LSTM {opts['layers']} x {opts['hidden']}, seq {opts['seq_len']}, batch {opts['batch_size']}, "
          f"RMSprop lr {opts['lr']:g} (decay {opts['lr_decay']:g}/epoch), clip {opts['clip']:g}, {args.dtype}, "
          f"{args.steps} steps ({trainer.windows} per epoch); torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads, numbanets threads (numba and BLAS): {args.threads or 'all'}")
    nb_times, th_times, log = [], [], []
    state = None
    t_all = time.perf_counter()
    for step in range(1, args.steps + 1):
        row = trainer.train_step()
        x, y, wrapped = stream.next()
        if wrapped:
            state = None
        t0 = time.perf_counter()
        th_loss, th_norm, state = torch_step(torch, tm, opt, x, y, state, trainer.lr_at(step), opts["clip"])
        th_times.append(time.perf_counter() - t0)
        nb_times.append(row["seconds"])
        entry = {"step": step, "nb_loss": row["train_loss"], "torch_loss": th_loss,
                 "nb_grad_norm": row["grad_norm"], "torch_grad_norm": th_norm,
                 "nb_s": row["seconds"], "torch_s": th_times[-1], "nb_val": math.nan, "torch_val": math.nan}
        out_of_time = args.max_time is not None and time.perf_counter() - t_all >= args.max_time
        if (args.eval_every and step % args.eval_every == 0) or step == args.steps or out_of_time:
            entry["nb_val"], entry["torch_val"] = trainer.evaluate(), torch_eval(torch, tm, trainer.val)
            print(f"step {step:5d}  train loss nb {row['train_loss']:.4f} torch {th_loss:.4f}  "
                  f"val loss nb {entry['nb_val']:.4f} torch {entry['torch_val']:.4f}  "
                  f"({time.perf_counter() - t_all:.0f} s)", flush=True)
        log.append(entry)
        if out_of_time:
            print(f"--max-time {args.max_time:g} s reached after {step} steps")
            break
    if args.csv:
        import pandas as pd

        pd.DataFrame(log).to_csv(args.csv, index=False)

    bench = None
    if args.bench_steps > 0:
        block = max(1, args.bench_steps // 4)
        nb_b, th_b = [], []
        for _ in range(4):
            for _ in range(block):
                nb_b.append(trainer.train_step()["seconds"])
            for _ in range(block):
                x, y, wrapped = stream.next()
                state = None if wrapped else state
                t0 = time.perf_counter()
                _, _, state = torch_step(torch, tm, opt, x, y, state, trainer.lr_at(trainer.step), opts["clip"])
                th_b.append(time.perf_counter() - t0)
        bench = (chars * len(nb_b) / sum(nb_b), chars * len(th_b) / sum(th_b),
                 chars / statistics.median(nb_b), chars / statistics.median(th_b), len(nb_b))

    skip = min(5, len(nb_times) - 1)  # the first steps include compilation / warm-up
    nb_rate = chars * (len(nb_times) - skip) / sum(nb_times[skip:])
    th_rate = chars * (len(th_times) - skip) / sum(th_times[skip:])
    nb_med = chars / statistics.median(nb_times[skip:])
    th_med = chars / statistics.median(th_times[skip:])
    nb_p10 = chars / float(np.percentile(nb_times[skip:], 10))
    th_p10 = chars / float(np.percentile(th_times[skip:], 10))
    nb_val, th_val = log[-1]["nb_val"], log[-1]["torch_val"]
    print()
    print(f"after {len(log)} steps ({len(log) * chars:,} characters, epoch {len(log) / trainer.windows:.2f}):")
    print(f"{'':22}{'numbanets':>12}{'torch':>12}")
    print(f"{'val loss (nats/char)':22}{nb_val:12.4f}{th_val:12.4f}   difference {nb_val - th_val:+.4f}")
    print(f"{'chars/s (mean)':22}{nb_rate:12,.0f}{th_rate:12,.0f}   numbanets / torch {nb_rate / th_rate:.2f}x")
    print(f"{'chars/s (median step)':22}{nb_med:12,.0f}{th_med:12,.0f}   numbanets / torch {nb_med / th_med:.2f}x")
    print(f"{'chars/s (fastest 10%)':22}{nb_p10:12,.0f}{th_p10:12,.0f}   numbanets / torch {nb_p10 / th_p10:.2f}x"
          "   (least disturbed by other load)")
    if bench:
        nb_m, th_m, nb_md, th_md, n = bench
        print(f"{'alone: chars/s (mean)':22}{nb_m:12,.0f}{th_m:12,.0f}   numbanets / torch {nb_m / th_m:.2f}x"
              f"   ({n} more steps each, in alternating blocks)")
        print(f"{'alone: chars/s (median)':22}{nb_md:12,.0f}{th_md:12,.0f}   numbanets / torch {nb_md / th_md:.2f}x")
    print(f"wall time {time.perf_counter() - t_all:.0f} s for both")
    return 0


if __name__ == "__main__":
    sys.exit(main())
