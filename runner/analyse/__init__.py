"""`nbnets analyse`: read run folders and CSVs back, summarise, compare and plot them.

    summary.py   find the runs, identify each table by its columns, build one section per kind of run
    format.py    aligned text, markdown and CSV rendering of the sections
    plots.py     the figures of --plot DIR

It reads files only; nothing here imports another command.
"""
