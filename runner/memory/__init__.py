"""`nbnets memory`: how far back each recurrent cell can remember, measured on generated tasks.

    tasks.py    recall (the lecture's "India ... Mumbai") and the adding problem, generated on the fly
    train.py    one run: one cell, one task, one distance, one seed, until solved or out of steps
    search.py   the largest distance learned: doubling, then bisection, all cells round by round
    runs.py     where the runs go: in this process, or on Dask distributed (runner.common.cluster)
    options.py  the options, checked once
    figures.py  memory.png
    command.py  the command: the grid or the search, memory.csv, summary.csv, max_distance.csv, the table
"""
