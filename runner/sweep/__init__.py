"""`nbnets sweep`: a grid of runs of another nbnets command on Dask distributed.

    grid.py     --grid/--set/--seeds parsed and checked against the command's click options
    worker.py   one run on a worker, in process, returned as its files (and checkpoints)
    engine.py   the cluster (local or an existing scheduler), submissions, results as they come
    folder.py   the sweep folder: sweep.json, sweep.csv, failures.csv, runs/<run>/
    command.py  the command: plan, run, write, Ctrl-C and --resume
"""
