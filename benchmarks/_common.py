"""Shared bits of the benchmarks: a results file per benchmark and a CPU-time stopwatch."""
from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from helpers.files import write_json_atomic
from helpers.train import Callback

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU x{torch.get_num_threads()} threads"
    return f"{platform.machine()} {device}, torch {torch.__version__}"


def write_results(name: str, results: dict) -> Path:
    path = write_json_atomic(RESULTS / f"{name}.json", {"machine": machine(), **results})
    print(f"results -> {path}")
    return path


@contextmanager
def stopwatch(record: dict, key: str):
    """Wall-clock and process CPU seconds of the block, stored in record[key + '_s'] / record[key + '_cpu_s']."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    record[f"{key}_s"] = round(time.perf_counter() - wall, 1)
    record[f"{key}_cpu_s"] = round(time.process_time() - cpu, 1)


class Stopwatch(Callback):
    """Training images/s over `batches` batches after `warmup` ones (CUDA synchronised), then stop the run."""

    def __init__(self, warmup: int, batches: int):
        self.warmup, self.batches = warmup, batches

    def before_fit(self, trainer) -> None:
        self.count, self.start, self.rate = 0, None, float("nan")

    def after_batch(self, trainer) -> None:
        self.count += 1
        if self.count == self.warmup:
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            self.start = time.perf_counter()
        if self.count == self.warmup + self.batches:
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            self.rate = self.batches * trainer.batch_size / (time.perf_counter() - self.start)
            trainer.stop_training = True
