"""`nbnets grad-decay`: vanishing and exploding gradients, measured per time step.

    options.py     the options as one frozen dataclass, validated once
    footprint.py   the bytes a run will allocate, checked against the free memory before it starts
    experiment.py  the weights and inputs the options ask for, --train-steps snapshots, the statistics
                   (numbanets.gradstats computes them)
    table.py       the terminal table
    figures.py     grad_decay.png
    command.py     the run: collect, write the run folder, print

Nothing here imports another command.
"""
