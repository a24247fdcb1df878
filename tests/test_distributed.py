"""Multi-process training: the real CLI under `accelerate launch --multi_gpu --num_processes 2` on the CPU (DDP over
gloo), gradient accumulation in one process, the SLURM script.

(`accelerate launch --cpu --num_processes 2` starts a single process in accelerate 1.x: its CPU path is the simple
launcher; `--multi_gpu` goes through torch.distributed.run, and with no GPU every process gets the CPU and gloo.)"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

from helpers.checkpoint import has_checkpoint, read_checkpoint
from helpers.errors import CourseError
from helpers.train import Trainer

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path: Path, *argv: str, timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COURSE_QUICK": "1", "COURSE_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), **extra_env}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), str(ROOT / "tests" / "distributed_run.py"),
               str(tmp_path / "record"), *argv]
    return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_processes_step_in_sync_and_only_rank0_writes(tmp_path):
    out = tmp_path / "runs" / "ddp-vae"
    result = _launch(tmp_path, "train", "vae", "--epochs", "2", "--out", str(out), "--gif", str(tmp_path / "t.gif"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((tmp_path / "record" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["steps"] == ranks[1]["steps"] > 0  # both ranks took every optimizer step
    assert ranks[0]["effective_batch_size"] == 2 * ranks[0]["batch_size"]
    # DDP averages gradients across ranks, so the two copies of the model end bit-for-bit identical.
    weights = [load_file(str(tmp_path / "record" / f"weights-rank{r}.safetensors")) for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    # Only rank 0 wrote: one checkpoint per epoch and the GIF frames; rank 1 wrote nothing.
    assert ranks[1]["writes"] == []
    assert sum(w.startswith("checkpoint") for w in ranks[0]["writes"]) == 2
    assert any(w.startswith("image") for w in ranks[0]["writes"])
    assert (tmp_path / "t.gif").exists()
    checkpoint = read_checkpoint(out, "vae")
    assert checkpoint.index["extra"]["processes"] == 2
    for name, value in checkpoint.weights.items():  # the checkpoint holds those weights
        assert torch.equal(value, weights[0][name]), name
    assert result.stdout.count("training vae") == 1  # the CLI's own lines come from rank 0 only


@pytest.mark.slow
def test_a_stop_asked_by_one_rank_stops_every_rank(tmp_path):
    # Rank 1 alone asks to stop after 5 batches; without agreement rank 0 would wait forever in the next all-reduce.
    result = _launch(tmp_path, "train", "vae", "--epochs", "2", "--out", str(tmp_path / "runs" / "stop"),
                     STOP_RANK1_AFTER="5")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((tmp_path / "record" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 5


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank_with_one_line(tmp_path):
    # Rank 1 alone gets a NaN loss at its 4th batch. Raising there alone would leave rank 0 waiting in the next
    # gradient all-reduce until the process group times out (30 min): the launch would outlive the timeout.
    out = tmp_path / "runs" / "nan"
    result = _launch(tmp_path, "train", "vae", "--epochs", "2", "--out", str(out), NAN_RANK1_AFTER="4", timeout=240)
    assert result.returncode != 0
    ranks = [json.loads((tmp_path / "record" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["code"] for r in ranks] == [2, 2]  # both ranks stopped with the course's one-line error
    assert ranks[0]["steps"] == ranks[1]["steps"] == 4  # both stopped after the same batch
    assert result.stderr.count("error: loss became") == 2, result.stderr[-3000:]
    assert "NaN/inf on another process" in result.stderr and "loss became nan" in result.stderr
    assert not has_checkpoint(out)  # the first epoch never ended, so nothing was written


@pytest.mark.slow
def test_ranks_agree_on_the_time_budget_plan(tmp_path):
    """A 20-s budget under two processes, rank 1 slowed: both ranks plan the same length (the slow rank's), take
    every planned step together and end with the same weights; the checkpoint records that plan."""
    out = tmp_path / "runs" / "ddp-budget"
    result = _launch(tmp_path, "train", "vae", "--time-budget", "20s", "--out", str(out), SLOW_RANK1_SECONDS="0.05")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((tmp_path / "record" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["plan"] == ranks[1]["plan"] and ranks[0]["plan"]["time_budget"] == 20
    assert ranks[0]["steps"] == ranks[1]["steps"] == ranks[0]["plan"]["total_steps"] > 0
    # rank 1 sleeps 0.05 s a batch, so the agreed plan cannot exceed the batches it fits in the budget
    assert ranks[0]["plan"]["total_steps"] < 20 / 0.05
    weights = [load_file(str(tmp_path / "record" / f"weights-rank{r}.safetensors")) for r in (0, 1)]
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    assert read_checkpoint(out, "vae").index["extra"]["plan"] == ranks[0]["plan"]


def _tiny_trainer(batch_size: int, grad_accum: int) -> Trainer:
    torch.manual_seed(0)
    x = torch.randn(16, 5)
    y = x @ torch.randn(5, 1)
    model = torch.nn.Linear(5, 1)

    def loss_fn(trainer, batch):
        inputs, targets = batch
        return {"loss": torch.nn.functional.mse_loss(trainer.model(inputs), targets)}

    return Trainer(model, loss_fn, TensorDataset(x, y), epochs=1, batch_size=batch_size, lr=0.05,
                   grad_accum=grad_accum)


def test_gradient_accumulation_matches_one_big_batch():
    # 2 batches of 8 accumulated == 1 batch of 16: the same items, the same averaged gradient, one step.
    accumulated, big = _tiny_trainer(8, 2), _tiny_trainer(16, 1)
    accumulated.fit()
    big.fit()
    assert accumulated.step == big.step == 1
    assert accumulated.effective_batch_size == big.effective_batch_size == 16
    for a, b in zip(accumulated.model.parameters(), big.model.parameters()):
        torch.testing.assert_close(a, b)


def test_bad_grad_accum_is_refused():
    with pytest.raises(CourseError, match="at least 1"):
        _tiny_trainer(8, 0)


def test_slurm_script_parses_and_names_a_valid_training_command():
    script = ROOT / "scripts" / "slurm" / "train.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    directives = dict(line[len("#SBATCH --"):].split("=", 1) for line in script.read_text().splitlines()
                      if line.startswith("#SBATCH --"))
    assert {"nodes", "gpus-per-node", "ntasks-per-node", "time"} <= directives.keys()
    env = {**os.environ, "DRY_RUN": "1", "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "4", "MASTER_ADDR": "node001"}
    result = subprocess.run(["bash", str(script), "ldm", "--epochs", "5", "--grad-accum", "2"], env=env,
                            capture_output=True, text=True, check=True)
    assert "--machine_rank $SLURM_NODEID" in result.stdout  # expanded on each node by srun's task, not here
    words = result.stdout.replace("$SLURM_NODEID", "1").split()
    assert words[:2] == ["accelerate", "launch"]
    assert words[words.index("--num_processes") + 1] == "8" and words[words.index("--num_machines") + 1] == "2"
    assert words[words.index("--main_process_ip") + 1] == "node001"
    # The accelerate options are real ones, and what follows `-m helpers` is a command our CLI accepts.
    from accelerate.commands.launch import launch_command_parser
    from helpers.__main__ import build_parser

    module = words.index("-m")
    launch = launch_command_parser().parse_args(words[2:module + 2])
    assert launch.module and launch.training_script == "helpers" and launch.multi_gpu
    args = build_parser().parse_args(words[module + 2:])
    assert (args.command, args.model, args.epochs, args.grad_accum) == ("train", "ldm", 5, 2)
    missing = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "usage" in missing.stderr
