"""The experiments and the `nbnets` command line over the numbanets library.

    cli.py        the click group: one thin function per command
    common/       what every command shares (run folders, training-run files, threads, progress, plots, errors)
    charlm/       train-charlm, sample
    cnn/          train-cnn, export-json
    graddecay/    grad-decay
    analyse/      analyse
    bench/        bench (above the training commands: it times their steps)
    shapes.py, info.py

Imports point one way: cli -> bench -> the other commands -> common -> numbanets.
docs/layout.md draws the whole tree; pyproject.toml's import-linter contract enforces it.
"""
