"""`nbnets analyse`: read run folders and CSVs back, summarise, compare and plot them.

    read.py      find the runs and sweep folders, identify each table by its columns
    summary.py   build one section per kind of run (and per experiment swept); the command itself
    sweep.py     a sweep folder's section: per grid point, mean, std and 95 % interval over the seeds
    headline.py  the headline numbers of one run folder (what nbnets sweep records per run)
    format.py    aligned text, markdown and CSV rendering of the sections
    plots.py     the figures of --plot DIR

It reads files only; nothing here imports another command.
"""
