"""`nbnets train-cnn` and `nbnets export-json`: small convolutional networks on real images.

    options.py      defaults, ranges, what --resume may change, the --arch spec
    model.py        the images, the check that the network fits them, the network
    footprint.py    the bytes a run will allocate, checked against the free memory before the network is built
    checkpoint.py   the checkpoint format: the one place it is written and read
    export_json.py  readable JSON snapshots of a network (`nbnets export-json`, `--init-from`)
    plots.py        filters.png and activations.png
    train.py        the Trainer (one epoch at a time) and the run

Imports point upward in that list (train.py imports the others); nothing here
imports another command.
"""
