"""Run by tests/test_distributed.py under `accelerate launch --multi_gpu --num_processes 2` (not collected by pytest).

It runs the real CLI (`python -m helpers train <model> ...`) in every process, and records for the test what each
rank did: its final weights, and every checkpoint and image it wrote.

    python tests/distributed_run.py RECORD_DIR train vae --epochs 1 --out runs/ddp-vae
"""
import json
import os
import sys
import time
from pathlib import Path

from safetensors.torch import save_file

import helpers.train as train
import helpers.viz as viz
from helpers.__main__ import main

record_dir, argv = Path(sys.argv[1]), sys.argv[2:]
rank = int(os.environ.get("RANK", "0"))
writes: list[str] = []
trainers: list = []

original_save, original_image, original_fit = train.save_checkpoint, viz.save_image, train.Trainer.fit


def save_checkpoint(run_dir, *args, **kwargs):
    writes.append(f"checkpoint {run_dir}")
    return original_save(run_dir, *args, **kwargs)


def save_image(image, path, *args, **kwargs):
    writes.append(f"image {path}")
    return original_image(image, path, *args, **kwargs)


class StopOneRank(train.Callback):
    """Rank 1 alone asks to stop after `batches` batches (as a time budget whose clock ran out first would)."""

    def __init__(self, batches: int):
        self.batches, self.seen = batches, 0

    def after_batch(self, trainer):
        self.seen += 1
        if trainer.rank == 1 and self.seen >= self.batches:
            trainer.stop_training = True


class SlowRank(train.Callback):
    """Rank 1 alone sleeps after every batch: a slower machine, whose plan every rank must agree on."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def after_batch(self, trainer):
        if trainer.rank == 1:
            time.sleep(self.seconds)


def poison_rank1(loss_fn, batches: int):
    """Rank 1 alone computes a NaN loss from its `batches`-th batch on (a diverging replica)."""
    seen = [0]

    def poisoned(trainer, batch):
        terms = loss_fn(trainer, batch)
        seen[0] += 1
        if trainer.rank == 1 and seen[0] >= batches:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    return poisoned


def fit(self):
    trainers.append(self)
    if os.environ.get("NAN_RANK1_AFTER"):
        self.loss_fn = poison_rank1(self.loss_fn, int(os.environ["NAN_RANK1_AFTER"]))
    if os.environ.get("STOP_RANK1_AFTER"):
        self.callbacks.append(StopOneRank(int(os.environ["STOP_RANK1_AFTER"])))
    if os.environ.get("SLOW_RANK1_SECONDS"):
        self.callbacks.append(SlowRank(float(os.environ["SLOW_RANK1_SECONDS"])))
    return original_fit(self)


train.save_checkpoint, viz.save_image, train.Trainer.fit = save_checkpoint, save_image, fit
code = main(argv)  # a CourseError (a NaN loss too) is printed in one line and returns 2
record_dir.mkdir(parents=True, exist_ok=True)
model = trainers[-1].model
save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
          str(record_dir / f"weights-rank{rank}.safetensors"))
(record_dir / f"rank{rank}.json").write_text(json.dumps({
    "code": code, "writes": writes, "world_size": trainers[-1].world_size, "steps": trainers[-1].step,
    "batch_size": trainers[-1].batch_size, "effective_batch_size": trainers[-1].effective_batch_size,
    "plan": trainers[-1].plan}))
sys.exit(code)
