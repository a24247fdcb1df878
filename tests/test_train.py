"""The training loop: losses fall, resume reproduces an uninterrupted run, NaN stops cleanly."""
import time
from dataclasses import dataclass

import imageio.v3 as iio
import pytest
import torch
from torch.utils.data import TensorDataset

from helpers.checkpoint import read_checkpoint
from helpers.digits import digit_data, train_text_cvae, vae_loss_fn
from helpers.models import ConvVAE, ConvVAEConfig
from helpers.errors import CourseError
from helpers.train import EMA, Callback, Checkpointing, Trainer, TrainingDiverged, WallClock, parse_duration


def _small_digits(cfg, n=1000):
    data = digit_data(cfg)
    return TensorDataset(data.train_images[:n], data.train_labels[:n])


def test_vae_loss_falls(quick_cfg):
    torch.manual_seed(0)
    digits = _small_digits(quick_cfg)
    trainer = Trainer(ConvVAE(ConvVAEConfig(latent_dim=8, width=16)), vae_loss_fn, digits, epochs=4, batch_size=32,
                      lr=2e-3)
    history = trainer.fit()
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    images = digits.tensors[0]
    mean_image = images.mean(0, keepdim=True).clamp(1e-4, 1 - 1e-4).expand_as(images)
    mean_image_bce = float(torch.nn.functional.binary_cross_entropy(mean_image, images, reduction="sum")) / len(images)
    assert history[-1]["recon"] < 0.9 * mean_image_bce  # it learned more than the average digit


def test_resume_matches_uninterrupted_run(quick_cfg, bank, tmp_path):
    straight = train_text_cvae(quick_cfg, tmp_path / "straight", epochs=3, bank=bank, progress=False)
    train_text_cvae(quick_cfg, tmp_path / "resumed", epochs=1, bank=bank, progress=False)
    resumed = train_text_cvae(quick_cfg, tmp_path / "resumed", epochs=3, resume=True, bank=bank, progress=False)
    assert resumed.start_epoch == 1 and resumed.step == straight.step
    for name, weight in straight.model.state_dict().items():
        assert torch.equal(weight, resumed.model.state_dict()[name]), name
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history])
    frames = iio.imread(tmp_path / "resumed" / "training.gif", index=None)
    assert len(frames) == 3  # one frame per epoch, across the interruption


def test_nan_loss_stops_and_keeps_last_good_checkpoint(quick_cfg, tmp_path):
    calls = {"n": 0}

    def poisoned(trainer, batch):
        calls["n"] += 1
        terms = vae_loss_fn(trainer, batch)
        if trainer.epoch == 1 and calls["n"] > 25:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    torch.manual_seed(0)
    trainer = Trainer(ConvVAE(ConvVAEConfig(latent_dim=4, width=8)), poisoned, _small_digits(quick_cfg, 640),
                      epochs=3, batch_size=32, lr=1e-3, callbacks=[Checkpointing(tmp_path, "vae")])
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2.*last good checkpoint was kept"):
        trainer.fit()
    checkpoint = read_checkpoint(tmp_path, "vae")
    assert checkpoint.index["epoch"] == 1
    assert all(torch.isfinite(w).all() for w in checkpoint.weights.values())


# ---------------------------------------------------------------------------- optimizer, schedule, EMA, budget
def _regression(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, x @ torch.randn(8, 1, generator=g))


@dataclass
class _NetConfig:
    hidden: int = 16


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = _NetConfig()
        self.embed = torch.nn.Embedding(3, 8)
        self.linear = torch.nn.Linear(8, 16)
        self.norm = torch.nn.LayerNorm(16)
        self.head = torch.nn.Linear(16, 1)
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return self.head(self.norm(self.linear(x + self.embed.weight[0])))


def _mse(trainer, batch):
    x, y = batch
    return {"loss": torch.nn.functional.mse_loss(trainer.model(x), y)}


def test_weight_decay_only_on_layer_weights():
    from helpers.train import parameter_groups

    net = _Net()
    decayed, plain = parameter_groups(net, 0.1)
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(net.linear.weight), id(net.head.weight)}
    names = {name for name, p in net.named_parameters() if any(p is q for q in plain["params"])}
    assert names == {"embed.weight", "linear.bias", "norm.weight", "norm.bias", "head.bias", "logit_scale"}
    # and the Trainer's AdamW uses them: a step with zero gradients leaves undecayed parameters untouched
    trainer = Trainer(net, lambda t, b: {"loss": 0.0 * t.model(b[0]).sum()}, _regression(64), epochs=1, batch_size=64,
                      lr=0.1, weight_decay=0.5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer.fit()
    after = net.state_dict()
    assert torch.equal(after["logit_scale"], before["logit_scale"]) and torch.equal(after["norm.weight"], before["norm.weight"])
    assert not torch.equal(after["linear.weight"], before["linear.weight"])  # decayed towards zero


def test_cosine_schedule_warms_up_and_ends_at_zero():
    lrs = []

    class Record(Callback):
        def after_batch(self, trainer):
            lrs.append(trainer.optimizer.param_groups[0]["lr"])

    trainer = Trainer(_Net(), _mse, _regression(320), epochs=5, batch_size=32, lr=1e-2, lr_schedule="cosine",
                      warmup=0.1, callbacks=[Record()])
    trainer.fit()
    assert len(lrs) == 50 and trainer.step == 50
    assert lrs[0] < lrs[3] < lrs[4]  # warm-up over the first 5 steps
    assert max(lrs) == pytest.approx(1e-2, rel=0.02)
    assert lrs[-1] < 1e-4  # the cosine ran to its end
    with pytest.raises(CourseError, match="unknown lr_schedule"):
        Trainer(_Net(), _mse, _regression(32), epochs=1, batch_size=32, lr=1e-2, lr_schedule="linear")


def test_ema_updates_once_per_optimizer_step():
    counts = {"updates": 0}

    class CountingEMA(EMA):
        def after_batch(self, trainer):
            before = trainer.ema_model.linear.weight.clone()
            super().after_batch(trainer)
            counts["updates"] += int(not torch.equal(before, trainer.ema_model.linear.weight))

    trainer = Trainer(_Net(), _mse, _regression(256), epochs=2, batch_size=16, lr=1e-2, grad_accum=4,
                      callbacks=[CountingEMA(0.9)])
    trainer.fit()
    assert trainer.step == 8 and counts["updates"] == 8  # 32 batches, 8 optimizer steps, 8 EMA updates


@pytest.mark.parametrize("text, seconds", [("20m", 1200), ("90s", 90), ("1.5h", 5400), ("45", 45), (" 2M ", 120)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-5m", "abc", "", "nan", "inf", "10d", "9999h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(CourseError, match="time budget"):
        parse_duration(text)


class _SlowMSE:
    """A loss that takes ~`seconds` per batch, so budget tests do not depend on how fast this machine is."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __call__(self, trainer, batch):
        time.sleep(self.seconds)
        return _mse(trainer, batch)


def _budget_trainer(tmp_path, budget, epochs=3, **kwargs):
    lrs = []

    class Record(Callback):
        def after_batch(self, trainer):
            lrs.append(trainer.optimizer.param_groups[0]["lr"])

    trainer = Trainer(_Net(), _SlowMSE(0.02), _regression(640), epochs=epochs, batch_size=32, lr=1e-2,
                      lr_schedule="cosine", time_budget=budget, callbacks=[WallClock(), Record(),
                                                                           Checkpointing(tmp_path, "vae", **kwargs)])
    return trainer, lrs


def test_time_budget_ends_on_time_with_a_complete_schedule(tmp_path):
    trainer, lrs = _budget_trainer(tmp_path, 20)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    assert 18 <= seconds <= 22, seconds  # within 10% of the budget
    assert trainer.step == trainer.plan["total_steps"] > 3 * 20  # planned far beyond the 3 epochs asked for
    assert lrs[-1] < 0.01 * max(lrs)  # the cosine reached its end: the schedule is complete, not cut off
    saved = read_checkpoint(tmp_path, "vae").index["extra"]["plan"]
    assert saved == {"total_steps": trainer.step, "time_budget": 20.0}


class _ChangingMSE(_SlowMSE):
    """~`first` s per batch while the run probes its speed, `then` s afterwards: a machine whose neighbour
    stops (or starts) while the probe reads it."""

    def __init__(self, first, then):
        super().__init__(first)
        self.then = then

    def __call__(self, trainer, batch):
        if trainer.plan is not None:
            self.seconds = self.then
        return super().__call__(trainer, batch)


@pytest.mark.parametrize("first, then", [(0.04, 0.02), (0.02, 0.04)])
def test_a_misread_probe_is_corrected_and_the_run_still_ends_on_time(first, then):
    planned = []

    class FirstPlan(Callback):
        def after_batch(self, trainer):
            if trainer.plan is not None and not planned:
                planned.append(trainer.plan["total_steps"])

    trainer = Trainer(_Net(), _ChangingMSE(first, then), _regression(6400), epochs=3, batch_size=32, lr=1e-2,
                      lr_schedule="cosine", time_budget=10, callbacks=[FirstPlan()])
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    assert 8.5 <= seconds <= 11.5, seconds  # the probe alone would have planned 2x too few (or too many) steps
    ratio = trainer.step / planned[0]
    assert (ratio > 1.4) if first > then else (ratio < 0.75), (planned[0], trainer.step)
    assert trainer.step == trainer.plan["total_steps"]


def test_resume_finishes_the_budget_plan(tmp_path):
    trainer, _ = _budget_trainer(tmp_path, 8)

    class Interrupt(Callback):
        def after_epoch(self, trainer):
            trainer.stop_training = trainer.plan is not None  # the machine goes away once the run has its plan

    trainer.callbacks.append(Interrupt())
    trainer.fit()
    plan = read_checkpoint(tmp_path, "vae").index["extra"]["plan"]
    assert trainer.step < plan["total_steps"] and trainer.step % 20 == 0
    resumed, lrs = _budget_trainer(tmp_path, None, epochs=1, resume=True)  # no budget given: the saved plan rules
    resumed.fit()
    assert resumed.step == plan["total_steps"] and resumed.time_budget == 8
    assert lrs[-1] < 0.01 * max(lrs)


def test_smoke_cap_and_max_steps_cut_runs_short(monkeypatch):
    from helpers.config import SMOKE

    monkeypatch.setenv("COURSE_SMOKE", "1")
    trainer = Trainer(_Net(), _mse, _regression(320), epochs=30, batch_size=64, lr=1e-2, time_budget=600,
                      lr_schedule="cosine")
    history = trainer.fit()
    assert trainer.batch_size == SMOKE.batch and trainer.time_budget is None
    assert len(history) == SMOKE.epochs and trainer.step == SMOKE.epochs * SMOKE.steps
    assert trainer.total_steps == trainer.step  # the schedule was planned for the capped run
    monkeypatch.delenv("COURSE_SMOKE")
    monkeypatch.setenv("COURSE_MAX_STEPS", "7")
    trainer = Trainer(_Net(), _mse, _regression(320), epochs=30, batch_size=32, lr=1e-2)
    history = trainer.fit()
    assert trainer.step == 7 and trainer.batch_size == 32 and len(history) == 1
    assert history[0]["images_per_second"] > 0  # measured over the batches of every epoch
    for bad in ("0", "-3", "ten"):
        monkeypatch.setenv("COURSE_MAX_STEPS", bad)
        with pytest.raises(CourseError, match="COURSE_MAX_STEPS must be a whole number"):
            Trainer(_Net(), _mse, _regression(32), epochs=1, batch_size=32, lr=1e-2)


@pytest.mark.parametrize("log_every, reads_per_epoch", [(1000, 1), (5, 16 // 5 + 1)])
def test_the_loop_reads_the_loss_back_only_at_log_intervals(monkeypatch, log_every, reads_per_epoch):
    """Reading a value back (.item(), float(), .tolist(), bool()) makes the host wait for the accelerator: the
    loop does it every `log_every` batches and at the end of each epoch, never per batch."""
    import sys

    reads = []
    for name in ("item", "tolist", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            if sys._getframe(1).f_code.co_filename.endswith("helpers/train.py"):
                reads.append(sys._getframe(1).f_code.co_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    trainer = Trainer(_Net(), _mse, _regression(), epochs=3, batch_size=32, lr=1e-3, log_every=log_every)
    history = trainer.fit()
    monkeypatch.undo()
    assert trainer.step == 3 * 16 and len(reads) == 3 * reads_per_epoch, reads
    assert history[-1]["loss"] < history[0]["loss"] and set(trainer.batch_logs) == {"loss"}
