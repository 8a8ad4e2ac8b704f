"""`nbnets train-charlm` and `nbnets sample`: character-level language models (char-rnn style).

    options.py     defaults, ranges, what --resume may change, the run length
    data.py        vocabulary, train/validation split, validation streams
    model.py       the CharLM the options describe
    footprint.py   the bytes a run will allocate, checked against the free memory before the model is built
    checkpoint.py  the checkpoint format (checkpoint.npz, best.npz): the one place it is written and read
    train.py       the Trainer (one window of truncated BPTT per step) and the run
    sample.py      text from a trained model (`nbnets sample`)

Imports point downward in that list; nothing here imports another command.
"""
