"""What every command shares, and nothing command-specific.

    runs.py       run folders, config.json, atomic CSV/JSON/figure writes, Ctrl-C, resume resolution,
                  one process per run folder (RunLock)
    footprint.py  a run's estimated memory against the machine's available memory
    training.py   NonFiniteLoss, RunResult, metrics.csv, checkpoints of a training run
    threads.py    numba, BLAS (and torch) thread counts inside a block
    progress.py   the one-line progress bar of training loops
    plots.py      matplotlib on the Agg backend, or a one-line reason why not
    system.py     versions and the BLAS in use, for config.json, `nbnets info` and the bench

Command packages import from here; nothing here imports a command package.
"""
