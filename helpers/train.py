"""The one training loop of the course, and the callbacks that hang optional behaviour on it.

    fit -> for each epoch: before_epoch -> (before_batch -> loss -> backward -> step -> after_batch)* -> after_epoch

The loop itself only moves batches, computes the loss the model's `loss_fn` returns, refuses to continue
on a NaN/inf loss, steps the optimizer (AdamW, weight decay on weight matrices and conv kernels only) and its
learning-rate schedule (`torch.optim.lr_scheduler`: constant, or linear warm-up then cosine decay), and keeps
per-epoch averages in `history`.

Training to a time budget (`time_budget=` seconds, or `python -m helpers train ... --time-budget 20m`): the run
first measures its own throughput for a few seconds, then *plans* its length in optimizer steps so that it ends on
time with its learning-rate schedule complete (a cosine that reaches zero, not one cut off half-way). The plan is
refined at the end of early epochs (they include the evaluation, GIF and checkpoint time) and saved with every
checkpoint, so `--resume` finishes the same plan. Progress bars, KL annealing, held-out
evaluation, GIF frames, the EMA of the weights and checkpoints/resume are callbacks, so notebooks 01-02 and the CLI share it.

Several processes (`accelerate launch`, `torchrun`, `srun`): when the launcher sets WORLD_SIZE > 1, the same loop
runs in every process. `accelerate` sets up the process group and picks each process's device; the model is
wrapped in DistributedDataParallel (gradients averaged across processes during backward), every process reads
its own shard of each epoch's shuffled order, and only the main process (rank 0) writes checkpoints, frames and
progress. Each process takes `batch_size` images per step, so the effective batch is
batch_size x processes x grad_accum (see the README on scaling the learning rate).

Measured on every run: images per second over each epoch's batches (the loss, backward and optimizer step, without
the epoch-end callbacks), stored in `history`; on CUDA the peak GPU memory, printed after the first optimizer step
(and an out-of-memory error answered in one line). `COURSE_MAX_STEPS=N` stops every run after N optimizer steps
(`make gpu-check` measures the full recipes that way).

The loop never waits for the accelerator between steps: the loss terms are summed on the device and read back
(one host sync) only every `log_every` batches and at the end of each epoch. That is when the progress bar moves
and a NaN/inf loss is noticed. Under several processes the ranks already agree after every batch on whether to
stop; a NaN on any rank rides on that agreement, so every rank stops with the same error instead of the others
waiting forever in the next gradient all-reduce.
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from helpers.checkpoint import has_checkpoint, load_weights, read_checkpoint, save_checkpoint
from helpers.config import SMOKE, smoke_enabled
from helpers.errors import CourseError


def world_size() -> int:
    """How many processes the launcher started (1 when run as a plain script or notebook)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in a single process and in rank 0 of a distributed run: the process that writes files."""
    return int(os.environ.get("RANK", "0")) == 0


def _accelerator():
    """The accelerate state of a multi-process launch (created once per process)."""
    try:
        from accelerate import Accelerator, DistributedDataParallelKwargs
    except ImportError as error:  # pragma: no cover - a dependency of the course
        raise CourseError("multi-process training needs accelerate: pip install accelerate") from error
    # Some losses leave parameters out of a step (a GAN's two players, a class head): DDP must not wait for them.
    # cpu=True when there is no GPU: accelerate then sets up a multi-CPU (gloo) run instead of a single process.
    return Accelerator(cpu=not torch.cuda.is_available(),
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


class _LossStep(torch.nn.Module):
    """The model and its loss function as one module, so DistributedDataParallel sees the whole forward pass
    (loss functions call model methods such as `model.loss(...)`, which a plain DDP wrapper would bypass)."""

    def __init__(self, trainer: "Trainer", model: torch.nn.Module):
        super().__init__()
        self.model, self._trainer = model, [trainer]  # a list: not registered as a submodule

    def forward(self, batch):
        return self._trainer[0].loss_fn(self._trainer[0], batch)


class TrainingDiverged(CourseError):
    """The loss became NaN or infinite; the last checkpoint written before it is kept."""


class TrainedModel:
    """What every trained generator wrapper reports about its network `self.model` and its `self.history`."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def train_seconds(self) -> float:
        """Training wall-clock (WallClock callback), NaN when the history does not say."""
        return self.history[-1].get("train_seconds", float("nan")) if self.history else float("nan")


DECAYED_LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d)
LR_SCHEDULES = ("constant", "cosine")
MAX_TIME_BUDGET = 7 * 24 * 3600  # a week: anything longer is a typo (minutes given as seconds, say)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight decay on the weights of linear and conv layers, none on anything else.

    Decay pulls a weight towards zero. That regularises a matrix; on a norm's gain or a bias it only fights the
    layer's scale and offset, on an embedding it shrinks rarely seen rows, and on CLIP's learnt temperature
    (`logit_scale`) it drags the temperature back to 1. As in nanoGPT's `configure_optimizers`."""
    decayed = {id(module.weight) for module in model.modules()
               if isinstance(module, DECAYED_LAYERS) and module.weight is not None}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trainable if id(p) in decayed], "weight_decay": weight_decay},
            {"params": [p for p in trainable if id(p) not in decayed], "weight_decay": 0.0}]


def parse_duration(text: str | float | int) -> float:
    """'20m', '90s', '1.5h', '45' (seconds) -> seconds. Raises CourseError (one line) for anything else."""
    units = {"s": 1, "m": 60, "h": 3600}
    raw = str(text).strip().lower()
    number, unit = (raw[:-1], units[raw[-1]]) if raw and raw[-1] in units else (raw, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        raise CourseError(f"time budget {text!r} is not a duration; write it like 90s, 20m or 1.5h") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise CourseError(f"time budget {text!r} must be a positive duration, e.g. 20m")
    if seconds > MAX_TIME_BUDGET:
        raise CourseError(f"time budget {text!r} is over a week; give it in minutes or hours, e.g. 20m or 3h")
    return seconds


class Callback:
    order = 0  # lower runs first

    def before_fit(self, trainer: "Trainer") -> None: ...
    def before_epoch(self, trainer: "Trainer") -> None: ...
    def before_batch(self, trainer: "Trainer") -> None: ...
    def after_batch(self, trainer: "Trainer") -> None: ...
    def after_epoch(self, trainer: "Trainer") -> None: ...
    def after_fit(self, trainer: "Trainer") -> None: ...


class Trainer:
    """Minimise `loss_fn(trainer, batch)['loss']` over `train_data` for `epochs` epochs.

    `batch` is the dataset's tuple with every tensor moved to `device`. Anything a callback sets on the
    trainer (e.g. `kl_weight`) is visible to `loss_fn`.

    `lr_schedule`: "constant", or "cosine" (linear warm-up over the first `warmup` share of the steps, then a
    cosine decay to zero). `time_budget` (seconds or "20m"; default COURSE_TIME_BUDGET) replaces `epochs` by a
    plan made from the measured throughput (see the module docstring).
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, train_data: Dataset, *, epochs: int,
                 batch_size: int, lr: float, device: torch.device | str = "cpu", callbacks: Iterable[Callback] = (),
                 seed: int = 0, grad_clip: float | None = None, weight_decay: float = 0.0, num_workers: int = 0,
                 channels_last: bool = False, pin_memory: bool | None = None, persistent_workers: bool = False,
                 amp: bool = True, grad_accum: int | None = None, lr_schedule: str = "constant",
                 warmup: float = 0.05, time_budget: float | str | None = None, log_every: int = 25):
        self.world_size, self.rank = world_size(), int(os.environ.get("RANK", "0"))
        self.accelerator = _accelerator() if self.world_size > 1 else None
        if self.accelerator and self.accelerator.num_processes != self.world_size:
            raise CourseError(f"the launcher started {self.world_size} processes but accelerate sees "
                              f"{self.accelerator.num_processes}: launch with `accelerate launch --multi_gpu` or torchrun")
        # Under a launcher each process takes the device accelerate assigns it (its local GPU, or the CPU).
        self.device = self.accelerator.device if self.accelerator else torch.device(device)
        # channels_last stores images as (B, H, W, C) in memory: convolutions run ~25% faster on CPU and use
        # the tensor cores' layout on GPU. Only the memory order changes, never a number.
        self.channels_last = channels_last
        self.model = model.to(self.device, memory_format=torch.channels_last) if channels_last else model.to(self.device)
        self.loss_fn, self.train_data = loss_fn, train_data
        self.epochs, self.batch_size, self.seed, self.grad_clip = epochs, batch_size, seed, grad_clip
        # Data loading (notebook 08 measures each): worker processes prepare batches while the model trains,
        # pinned (page-locked) memory makes host -> GPU copies asynchronous, persistent workers survive epochs.
        self.num_workers, self.persistent_workers = num_workers, persistent_workers and num_workers > 0
        self.pin_memory = self.device.type == "cuda" and (pin_memory is None or pin_memory)  # pinning helps GPUs only
        self.optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr)
        if lr_schedule not in LR_SCHEDULES:
            raise CourseError(f"unknown lr_schedule {lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
        if not 0 <= warmup < 1:
            raise CourseError(f"warmup is a share of the steps in [0, 1), got {warmup}")
        self.lr_schedule, self.warmup, self.scheduler = lr_schedule, warmup, None
        budget = os.environ.get("COURSE_TIME_BUDGET") if time_budget is None else time_budget
        self.time_budget = parse_duration(budget) if budget not in (None, "") else None
        # COURSE_SMOKE=1 (make smoke-full): the same code path, cut to a few small steps (helpers.config.SMOKE)
        self.max_batches = None
        if smoke_enabled():
            self.epochs, self.batch_size, self.time_budget = min(epochs, SMOKE.epochs), min(batch_size, SMOKE.batch), None
        # The plan: how many optimizer steps this run takes ({"total_steps", "time_budget"}; set by a budget run
        # after its probe, restored on resume). Without a budget it is epochs x steps per epoch.
        self.plan: dict | None = None
        self._budget_start, self._replan_every, self._busy, self._epochs_ended = None, None, 0.0, 0
        self._marks: list[tuple[int, float]] = []  # (step, seconds in steps) at each re-plan of a budget run
        self.callbacks = sorted(callbacks, key=lambda cb: cb.order)
        self.epoch, self.step, self.start_epoch = 0, 0, 0
        self.stepped = False  # did the last batch end with an optimizer step (False between accumulated batches)
        self.history: list[dict[str, float]] = []
        self.kl_weight = 1.0
        self.stop_training = False  # a callback sets it to end the run after the current batch
        self.batch_logs: dict[str, float] = {}  # the last batch's loss terms, read back every `log_every` batches
        self.log_every = max(1, int(log_every))
        self._last_terms: dict[str, torch.Tensor] = {}
        self.amp_dtype = None
        if amp and self.device.type == "cuda":  # mixed precision only on CUDA: bf16/fp16 on CPU is many times slower
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        # Gradient accumulation: average the gradients of `grad_accum` batches before each optimizer step
        # (COURSE_GRAD_ACCUM or `python -m helpers train ... --grad-accum N` set it for every model).
        self.grad_accum = int(os.environ.get("COURSE_GRAD_ACCUM", "1") if grad_accum is None else grad_accum)
        if self.grad_accum < 1:
            raise CourseError(f"grad_accum must be at least 1, got {self.grad_accum}")
        if smoke_enabled():
            self.max_batches = SMOKE.steps * self.grad_accum
        max_steps = os.environ.get("COURSE_MAX_STEPS", "").strip()
        if max_steps and (not max_steps.isdigit() or int(max_steps) < 1):
            raise CourseError(f"COURSE_MAX_STEPS must be a whole number of optimizer steps >= 1, got {max_steps!r}")
        self.max_steps = int(max_steps) if max_steps else None
        self.peak_memory_gib: float | None = None
        self._micro = 0
        self._step_module = _LossStep(self, self.model)
        if self.accelerator:
            self._step_module = self.accelerator.prepare_model(self._step_module)  # DDP; the device is set above
            if self.is_main_process:
                print(f"distributed: {self.world_size} processes on {self.device.type}, batch {batch_size} per process"
                      f" x {self.grad_accum} accumulation = effective batch "
                      f"{batch_size * self.world_size * self.grad_accum}", flush=True)

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.world_size * self.grad_accum

    def _call(self, event: str) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self)

    def loader(self, epoch: int) -> DataLoader:
        # A generator seeded per epoch makes the batch order a function of (seed, epoch) alone, so a resumed
        # run sees exactly the batches an uninterrupted one would.
        order = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        # The sampler owns that generator (the DataLoader draws its workers' seeds from another one), so the order
        # is the same with or without worker processes, persistent or not.
        if self.persistent_workers and getattr(self, "_loader", None) is not None:
            self._set_order(epoch, order)  # the same workers, this epoch's order
            return self._loader
        if self.world_size > 1:  # every process shuffles with the same seed and reads every world_size-th item
            self._sampler = DistributedSampler(self.train_data, num_replicas=self.world_size, rank=self.rank,
                                               shuffle=True, seed=self.seed, drop_last=True)
            self._sampler.set_epoch(epoch)
        else:
            self._sampler = RandomSampler(self.train_data, generator=order)
        self._loader = DataLoader(self.train_data, batch_size=self.batch_size, sampler=self._sampler,
                                  generator=torch.Generator().manual_seed(self.seed),
                                  drop_last=self._drop_last, num_workers=self.num_workers,
                                  pin_memory=self.pin_memory, persistent_workers=self.persistent_workers)
        return self._loader

    def _set_order(self, epoch: int, order: torch.Generator) -> None:
        if isinstance(self._sampler, DistributedSampler):
            self._sampler.set_epoch(epoch)
        else:
            self._sampler.generator = order

    @property
    def _drop_last(self) -> bool:
        """Drop a short last batch, unless one process's share of the data is smaller than a batch."""
        return len(self.train_data) // self.world_size > self.batch_size

    @property
    def batches_per_epoch(self) -> int:
        """Batches one process reads per epoch."""
        size = len(self.train_data) // self.world_size
        batches = size // self.batch_size if self._drop_last else -(-size // self.batch_size)
        return min(batches, self.max_batches) if self.max_batches else batches

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (fewer than batches with gradient accumulation)."""
        return max(1, self.batches_per_epoch // self.grad_accum)

    @property
    def total_steps(self) -> int | None:
        """Optimizer steps of the whole run: planned from the budget, or epochs x steps per epoch (None while a
        budget run is still measuring its throughput)."""
        if self.plan is not None:
            return self.plan["total_steps"]
        return None if self.time_budget else self.epochs * self.steps_per_epoch

    def set_plan(self, total_steps: int) -> None:
        """Fix the run's length in optimizer steps, and (re)build the learning-rate schedule to end exactly there."""
        total_steps = max(int(total_steps), self.step, 1)
        self.plan = {"total_steps": total_steps, "time_budget": self.time_budget}
        self.epochs = -(-total_steps // self.steps_per_epoch)
        self._build_scheduler()

    def _build_scheduler(self) -> None:
        """The schedule over `total_steps`, fast-forwarded to the current step (so a resumed or re-planned run
        continues the same curve). Until a budget run has its plan, it warms up towards a long provisional one."""
        if self.lr_schedule == "constant":
            return
        total = self.total_steps or 10 ** 9
        for group in self.optimizer.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"])
        warmup_steps = max(1, round(self.warmup * total)) if self.total_steps else max(1, self.steps_per_epoch // 2)
        warmup_steps = min(warmup_steps, total - 1) if total > 1 else 1
        from torch.optim import lr_scheduler

        parts = [lr_scheduler.LinearLR(self.optimizer, start_factor=1 / (warmup_steps + 1), total_iters=warmup_steps),
                 lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(1, total - warmup_steps))]
        self.scheduler = lr_scheduler.SequentialLR(self.optimizer, parts, milestones=[warmup_steps])
        with warnings.catch_warnings():  # fast-forwarding steps the schedule without the optimizer, on purpose
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            for _ in range(self.step):
                self.scheduler.step()

    def fit(self) -> list[dict[str, float]]:
        self._call("before_fit")  # Checkpointing puts back the plan of a resumed run
        if self.plan is not None and self.plan.get("time_budget"):  # a budget run resumed: finish the plan it made
            self.time_budget = self.plan["time_budget"]
            self.set_plan(self.plan["total_steps"])
        elif self.time_budget is not None:  # measure the throughput first, then plan (see _probe_throughput)
            self.plan, self.epochs, self._probe = None, 10 ** 9, None
            self._busy, self._epochs_ended = 0.0, 0
            self._budget_start = time.perf_counter()
            self._build_scheduler()
        else:
            self.set_plan(self.epochs * self.steps_per_epoch)
        try:
            for self.epoch in range(self.start_epoch, self.epochs):
                self.model.train()
                self._call("before_epoch")
                sums: dict[str, torch.Tensor] = {}  # loss terms summed on the device, read every log_every batches
                batches, images, busy = 0, 0, 0.0
                mark = time.perf_counter()
                for batch in self.loader(self.epoch):
                    tick = time.perf_counter()
                    self.batch = tuple(self._to_device(t) for t in batch)
                    self._call("before_batch")
                    self._guarded_step(sums)
                    batches += 1
                    images += len(self.batch[0])
                    if batches % self.log_every == 0 and not self.accelerator:
                        self._read_logs(sums, batches)
                    self._call("after_batch")
                    busy += time.perf_counter() - tick
                    now = time.perf_counter()  # the budget's clock of steps: loading the batch included
                    self._busy, mark = self._busy + now - mark, now
                    if self.max_steps and self.step >= self.max_steps:
                        self.stop_training = True
                    if self.time_budget is not None and self.plan is None:
                        self._probe_throughput()
                    elif self._replan_every and self.stepped and self.step % self._replan_every == 0:
                        self._refine_plan(epoch_ended=False)
                    if self.plan is not None and self.step >= self.plan["total_steps"]:
                        self.stop_training = True
                    if self.accelerator:  # stop together: a rank leaving alone would hang the others' all-reduce
                        self._agree_to_stop(sums, batches)
                    if self.stop_training or batches == self.max_batches:
                        break
                means = self._read_logs(sums, batches)
                self.history.append({"epoch": self.epoch + 1, **means,
                                     "images_per_second": images * self.world_size / max(busy, 1e-9),
                                     **({"peak_memory_gib": self.peak_memory_gib} if self.peak_memory_gib else {})})
                self._call("after_epoch")
                if self.time_budget is not None and not self.stop_training:
                    self._epochs_ended += 1
                    self._refine_plan(epoch_ended=True)
                if self.stop_training:
                    break
        finally:
            self._call("after_fit")
            if self.accelerator:  # the others wait until rank 0 has written its last checkpoint and figures
                self.accelerator.wait_for_everyone()
        return self.history

    def _agreed_steps(self, total: int) -> int:
        """Under several processes every rank must plan the same length: the slowest rank's."""
        if self.accelerator:
            value = torch.tensor([float(total)], device=self.device)
            torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
            total = int(value.item())
        return total

    def _probe_throughput(self) -> None:
        """Measure steps/s from the second step on (the first pays for allocation and kernel selection) for
        max(2 s, 4% of the budget), then plan the run to fill what is left of the budget. A probe that short reads
        a noisy machine badly (we saw 39 images/s where the run then went at 45), so `_refine_plan` re-plans at every
        twentieth of the plan through the first half of the run (at the same steps on every process)."""
        now = time.perf_counter()
        if self._probe is None:
            if self.step >= 1:
                self._probe = (self.step, now, self._busy)
            return
        steps, seconds = self.step - self._probe[0], now - self._probe[1]
        ready = steps >= 3 and seconds >= max(2.0, 0.04 * self.time_budget)
        if self.accelerator:  # plan at the same batch on every rank
            flag = torch.tensor([float(ready)], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            ready = bool(flag.item())
        if ready:
            self._rate = steps / max(seconds, 1e-9)
            left = self.time_budget - (now - self._budget_start)
            self.set_plan(self._agreed_steps(self.step + int(self._rate * max(0.0, left))))
            self._replan_every, self._marks = max(1, self.plan["total_steps"] // 20), [(self.step, self._busy)]
            if self.is_main_process:
                print(f"time budget {self.time_budget / 60:.1f} min: measured {self._rate * self.effective_batch_size:.0f} "
                      f"images/s on {self.device.type} -> {self.plan['total_steps']:,} steps planned "
                      f"({self.epochs} epochs of {self.steps_per_epoch} steps)", flush=True)

    def _refine_plan(self, epoch_ended: bool) -> None:
        """Re-plan in the first half of the run, from the steps/s of the last tenth of the run (time in training
        steps, loading their batches included) and what each epoch's end has cost so far besides them (held-out
        evaluation, GIF frames, checkpoints), to be paid again at every epoch end still to come."""
        if self.plan is None or self._budget_start is None or self.step * 2 > self.plan["total_steps"]:
            return  # still probing, a resumed run finishing its saved plan, or late enough to keep the plan
        elapsed = time.perf_counter() - self._budget_start
        self._marks.append((self.step, self._busy))
        since = self._marks[max(0, len(self._marks) - 3)]  # the last two re-plans' steps: today's speed, not the probe's
        steps, busy = self.step - since[0], self._busy - since[1]
        if steps >= 3 and busy > 0:
            self._rate = steps / busy
        overhead = max(0.0, elapsed - self._busy) / self._epochs_ended if self._epochs_ended else 0.0
        planned_epochs = -(-self.plan["total_steps"] // self.steps_per_epoch)
        ends_to_come = max(0, planned_epochs - self.epoch - (1 if epoch_ended else 0))
        left = self.time_budget - elapsed - overhead * ends_to_come
        self.set_plan(self._agreed_steps(self.step + int(self._rate * max(0.0, left))))

    def _agree_to_stop(self, sums: dict[str, torch.Tensor], batches: int) -> None:
        """Any rank's callback asking to stop (e.g. one whose clock ran out first) stops every rank, and a NaN/inf
        loss on any rank stops every rank with the same error (raising on one rank alone would leave the others
        waiting in the next all-reduce)."""
        flags = torch.stack([torch.tensor(float(self.stop_training), device=self.device),
                             (~torch.isfinite(self._last_terms["loss"])).float()])
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        stop, diverged = flags.tolist()
        self.stop_training = bool(stop)
        if diverged:
            own = self._last_terms["loss"].item()
            self._diverged(own if not math.isfinite(own) else "NaN/inf on another process")
        if batches % self.log_every == 0:
            self._read_logs(sums, batches)

    def _read_logs(self, sums: dict[str, torch.Tensor], batches: int) -> dict[str, float]:
        """Read the loss terms back from the device (one host sync): the last batch's values into `batch_logs`,
        and the means since the start of the epoch, which are returned. A NaN/inf loss stops the run here."""
        if not sums:
            return {}
        keys = list(sums)
        values = torch.stack([sums[k].float() for k in keys] + [self._last_terms[k].float() for k in keys]).tolist()
        self.batch_logs = dict(zip(keys, values[len(keys):]))
        means = {k: v / max(batches, 1) for k, v in zip(keys, values)}
        if not math.isfinite(means["loss"]):
            self._diverged(means["loss"])
        return means

    def _diverged(self, value) -> None:
        raise TrainingDiverged(f"loss became {value} at epoch {self.epoch + 1}, by step {self.step}; training "
                               "stopped and the last good checkpoint was kept: lower the learning rate")

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(self.device, non_blocking=True)
        if self.channels_last and tensor.dim() == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def _guarded_step(self, sums: dict[str, float]) -> None:
        """One batch; on CUDA, the peak memory after the first optimizer step, and out-of-memory in one line."""
        try:
            self._one_step(sums)
        except torch.OutOfMemoryError:
            raise CourseError(
                f"the GPU ran out of memory with batches of {self.batch_size} images: halve the recipe's batch_size "
                f"(the RECIPES of its track module, or batch_size= where a train function takes it) and double the "
                f"accumulation (--grad-accum {2 * self.grad_accum}, or COURSE_GRAD_ACCUM={2 * self.grad_accum}) "
                f"to keep the effective batch") from None
        if self.device.type == "cuda" and self.peak_memory_gib is None and self.step == 1 and self.stepped:
            self.peak_memory_gib = torch.cuda.max_memory_allocated(self.device) / 2 ** 30
            if self.is_main_process:
                total = torch.cuda.get_device_properties(self.device).total_memory / 2 ** 30
                print(f"peak GPU memory after the first step: {self.peak_memory_gib:.2f} GiB of {total:.0f} GiB "
                      f"(batch {self.batch_size} x accumulation {self.grad_accum})", flush=True)

    def _one_step(self, sums: dict[str, float]) -> None:
        self._micro += 1
        last = self._micro % self.grad_accum == 0  # the batch that completes an accumulation and steps
        # Between accumulation steps, DDP need not average gradients yet (no_sync): they are summed locally.
        sync = contextlib.nullcontext() if last or not self.accelerator else self._step_module.no_sync()
        with sync:
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                terms = self._step_module(self.batch)
            loss = terms["loss"]
            self.scaler.scale(loss / self.grad_accum).backward()
        if last:
            if self.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.scheduler is not None:
                self.scheduler.step()
            self.step += 1
        self.stepped = last
        # No .item() here: reading a value back would make the host wait for the accelerator every batch.
        self._last_terms = {k: v.detach() for k, v in terms.items()}
        for key, value in self._last_terms.items():
            sums[key] = sums[key] + value.float() if key in sums else value.float().clone()


class ProgressBar(Callback):
    """tqdm.auto bar per epoch (a widget in Jupyter, text in a terminal) and one summary line per epoch."""

    order = -10

    def __init__(self, keys: tuple[str, ...] = ("loss",), print_epochs: bool = True):
        self.keys, self.print_epochs, self.bar = keys, print_epochs, None

    def before_epoch(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        # mininterval + refresh=False: redraw at most twice a second; a redraw per batch floods a notebook's
        # message channel (and nbval's output reader) with thousands of widget updates.
        self.bar = tqdm(total=trainer.batches_per_epoch, disable=not trainer.is_main_process, desc=f"epoch {trainer.epoch + 1}/{trainer.epochs if trainer.plan else '?'}",
                        leave=False, mininterval=0.5)

    def after_batch(self, trainer: Trainer) -> None:
        self.bar.set_postfix({k: f"{trainer.batch_logs[k]:.2f}" for k in self.keys if k in trainer.batch_logs},
                             refresh=False)
        self.bar.update(1)

    def after_epoch(self, trainer: Trainer) -> None:
        self.bar.close()
        if self.print_epochs and trainer.is_main_process:
            record = trainer.history[-1]
            print(f"epoch {record['epoch']:>3}/{trainer.epochs if trainer.plan else '?'}  " +
                  "  ".join(f"{v:.0f} images/s" if k == "images_per_second" else f"{k} {v:.3f}"
                            for k, v in record.items() if k != "epoch"), flush=True)

    def after_fit(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()


class KLAnnealing(Callback):
    """Raise the KL weight linearly from `start` to 1 over the first `warmup_epochs` epochs (0 = always 1)."""

    def __init__(self, warmup_epochs: float, start: float = 0.0):
        self.warmup_epochs, self.start = warmup_epochs, start

    def before_epoch(self, trainer: Trainer) -> None:
        self.weights: list[float] = []

    def before_batch(self, trainer: Trainer) -> None:
        if self.warmup_epochs <= 0:
            trainer.kl_weight = 1.0
        else:
            progress = min(1.0, (trainer.step + 1) / (self.warmup_epochs * trainer.steps_per_epoch))
            trainer.kl_weight = self.start + (1.0 - self.start) * progress
        self.weights.append(trainer.kl_weight)

    def after_epoch(self, trainer: Trainer) -> None:
        trainer.history[-1]["kl_weight"] = sum(self.weights) / max(len(self.weights), 1)  # the epoch's mean weight


class WallClock(Callback):
    """Add `train_seconds` to every epoch's record: training time so far (evaluation and GIF frames
    excluded), summed across resumes, so runs with different models can be compared by time spent."""

    order = 5

    def before_epoch(self, trainer: Trainer) -> None:
        self.start = time.perf_counter()

    def after_epoch(self, trainer: Trainer) -> None:
        before = trainer.history[-2].get("train_seconds", 0.0) if len(trainer.history) > 1 else 0.0
        trainer.history[-1]["train_seconds"] = round(before + time.perf_counter() - self.start, 2)


class Evaluate(Callback):
    """After every epoch, add `metrics_fn(model)` (e.g. held-out loss) to that epoch's history record."""

    order = 10

    def __init__(self, metrics_fn: Callable[[torch.nn.Module], dict[str, float]]):
        self.metrics_fn = metrics_fn

    def after_epoch(self, trainer: Trainer) -> None:
        trainer.model.eval()
        with torch.no_grad():
            trainer.history[-1].update(self.metrics_fn(trainer.model))


class GifFrames(Callback):
    """Render a fixed grid (same prompts, same seeds) each `every` epochs; write all frames as a GIF at the end.

    With an `EMA` callback the averaged weights render the frames (they are the ones that sample).

    Frames are PNG files in `frames_dir`, so a resumed run continues the same animation.
    """

    order = 20

    def __init__(self, render_fn: Callable[[torch.nn.Module], torch.Tensor], frames_dir: str | Path,
                 gif_path: str | Path | None, every: int = 1, fps: float = 3.0):
        self.render_fn, self.frames_dir, self.every, self.fps = render_fn, Path(frames_dir), every, fps
        self.gif_path = Path(gif_path) if gif_path else None

    def after_epoch(self, trainer: Trainer) -> None:
        from helpers.viz import save_image, titled

        if not trainer.is_main_process:
            return
        if trainer.epoch == 0 and self.frames_dir.exists():
            shutil.rmtree(self.frames_dir)  # a fresh run starts a fresh animation; a resumed one continues it
        if (trainer.epoch + 1) % self.every and trainer.epoch + 1 != trainer.epochs:
            return
        model = getattr(trainer, "ema_model", trainer.model)  # the weights that sample, when an EMA is kept
        model.eval()
        grid = self.render_fn(model)
        save_image(titled(grid, f"epoch {trainer.epoch + 1}"), self.frames_dir / f"epoch_{trainer.epoch + 1:04d}.png")

    def after_fit(self, trainer: Trainer) -> None:
        from helpers.viz import write_gif

        if not trainer.is_main_process:
            return
        frames = sorted(self.frames_dir.glob("epoch_*.png")) if self.frames_dir.exists() else []
        if self.gif_path and frames:
            write_gif(frames, self.gif_path, fps=self.fps)


class EMA(Callback):
    """Keep an exponential moving average of the weights: `trainer.ema_model`, the model that samples.

    ema <- decay * ema + (1 - decay) * weights after every optimizer step (not every batch: with gradient
    accumulation the weights only change every `grad_accum` batches), with the decay warmed up as
    min(decay, (1 + step) / (10 + step)) so the average does not remember the random initialisation for
    thousands of steps. Diffusion samples from the averaged weights are markedly smoother than from the
    raw ones. The average is saved with the resume state (`ema.*` tensors) and restored on resume.
    """

    order = -5  # before Checkpointing restores into it, and updated before any evaluation reads it

    def __init__(self, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise CourseError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay

    def before_fit(self, trainer: Trainer) -> None:
        import copy

        trainer.ema_model = copy.deepcopy(trainer.model).eval().requires_grad_(False)

    @torch.no_grad()
    def after_batch(self, trainer: Trainer) -> None:
        if not trainer.stepped:
            return
        decay = min(self.decay, trainer.step / (9 + trainer.step))  # (1 + s) / (10 + s) for the s-th update, 0-based
        ema_state, state = trainer.ema_model.state_dict(), trainer.model.state_dict()
        for name, value in state.items():
            if value.dtype.is_floating_point:
                ema_state[name].lerp_(value, 1 - decay)
            else:
                ema_state[name].copy_(value)

    def state_tensors(self, trainer: Trainer) -> dict[str, torch.Tensor]:
        return {f"ema.{k}": v for k, v in trainer.ema_model.state_dict().items()}

    def load_state(self, trainer: Trainer, checkpoint) -> None:
        trainer.ema_model.load_state_dict(checkpoint.ema_weights)


class Checkpointing(Callback):
    """Save model + optimizer + step + RNG after every epoch; with `resume`, continue from what is there.

    Runs after every other epoch callback, so the saved history includes held-out metrics and the saved
    RNG state is the one the next epoch starts from.
    """

    order = 100

    def __init__(self, run_dir: str | Path, kind: str, resume: bool = False, extra: dict | None = None,
                 extra_tensors: dict[str, torch.Tensor] | None = None):
        self.run_dir, self.kind, self.resume = Path(run_dir), kind, resume
        self.extra, self.extra_tensors = extra or {}, extra_tensors

    def before_fit(self, trainer: Trainer) -> None:
        if not (self.resume and has_checkpoint(self.run_dir)):
            return
        checkpoint = read_checkpoint(self.run_dir, self.kind)
        load_weights(trainer.model, checkpoint)
        optimizer_state = checkpoint.optimizer_state()
        if optimizer_state is None:
            raise CourseError(f"{self.run_dir} holds final weights without resume state; train again without --resume")
        trainer.optimizer.load_state_dict(optimizer_state)
        trainer.start_epoch = trainer.epoch = checkpoint.index["epoch"]
        trainer.step = checkpoint.index["step"]
        trainer.history = list(checkpoint.index["extra"].get("history", []))
        trainer.plan = checkpoint.index["extra"].get("plan")
        for callback in trainer.callbacks:  # callbacks with state of their own (e.g. EMA) take it back
            if hasattr(callback, "load_state"):
                callback.load_state(trainer, checkpoint)
        checkpoint.restore_rng()
        if trainer.start_epoch >= trainer.epochs:
            print(f"{self.run_dir} already holds {trainer.start_epoch} epochs; nothing to resume (raise --epochs)")

    def after_epoch(self, trainer: Trainer) -> None:
        if not trainer.is_main_process:  # every process holds the same weights; one writes them
            return
        extra = {**self.extra, "history": trainer.history, "epochs_planned": trainer.epochs, "plan": trainer.plan,
                 "processes": trainer.world_size, "effective_batch_size": trainer.effective_batch_size}
        tensors = dict(self.extra_tensors or {})
        for callback in trainer.callbacks:
            if hasattr(callback, "state_tensors"):
                tensors.update(callback.state_tensors(trainer))
        save_checkpoint(self.run_dir, self.kind, trainer.model, epoch=trainer.epoch + 1, step=trainer.step,
                        optimizer=trainer.optimizer, extra=extra, extra_tensors=tensors)
