"""The names `device` and `precision` settings accept (torch-free, so config validation does not load torch).

`sfdet.devices` turns them into torch devices and concrete precisions.
"""

DEVICES = ("auto", "cpu", "cuda")
CONCRETE_PRECISIONS = ("fp32", "bf16", "fp16")
PRECISIONS = ("auto",) + CONCRETE_PRECISIONS
