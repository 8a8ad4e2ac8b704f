"""`nbnets bench`: numbanets' kernels and training steps timed against plain numpy and PyTorch.

    command.py       options, the run (agreement, timing, rows, bench.csv, config.json) and the table
    case.py          the data types: Case, Runner (one implementation's timed call), Ctx (device, torch)
    cases.py         the cases: kernel ops and training steps, their inputs, FLOPs and runners
    measure.py       agreement with numbanets, timing, the sgemm ceiling, the allocator, fresh processes
    memory_child.py  the fresh process that measures a training case's peak memory
    peers.py         the plain numpy peers (ops and whole training steps)
    torch_peer.py    the PyTorch peers; torch is optional, imported only by its load()

Imports point downward: command -> cases -> peers, torch_peer, case; command ->
measure -> case; memory_child -> cases. bench builds the train-charlm and
train-cnn models (runner.charlm, runner.cnn) to time their steps.
"""
