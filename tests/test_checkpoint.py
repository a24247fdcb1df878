"""Checkpoints: round trip, atomic under SIGKILL, and clear errors for missing, corrupt or foreign ones."""
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from helpers.checkpoint import read_checkpoint, load_weights, save_checkpoint
from helpers.errors import CourseError
from helpers.models import ConvVAE, ConvVAEConfig


def _model(seed=0):
    torch.manual_seed(seed)
    return ConvVAE(ConvVAEConfig(latent_dim=4, width=8))


def test_round_trip_with_optimizer(tmp_path):
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.rand(2, 1, 28, 28))[0].sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path, "vae", model, epoch=3, step=30, optimizer=optimizer, extra={"note": "x"})
    checkpoint = read_checkpoint(tmp_path, "vae")
    restored = load_weights(ConvVAE(ConvVAEConfig(**checkpoint.index["config"])), checkpoint)
    for a, b in zip(model.state_dict().values(), restored.state_dict().values()):
        assert torch.equal(a, b)
    fresh = torch.optim.AdamW(restored.parameters(), lr=1e-3)
    fresh.load_state_dict(checkpoint.optimizer_state())
    assert checkpoint.index["epoch"] == 3 and checkpoint.index["extra"]["note"] == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.json", "model-e0003-s0000030.safetensors", "state-e0003-s0000030.safetensors"]
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))


def test_missing_corrupt_and_foreign_checkpoints(tmp_path):
    with pytest.raises(CourseError, match="no checkpoint in .*python -m helpers train vae"):
        read_checkpoint(tmp_path / "nothing", "vae")
    save_checkpoint(tmp_path, "vae", _model())
    with pytest.raises(CourseError, match="holds a 'vae' checkpoint, not 'text-cvae'"):
        read_checkpoint(tmp_path, "text-cvae")
    weights = next(tmp_path.glob("model-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CourseError, match="corrupt"):
        read_checkpoint(tmp_path, "vae")
    (tmp_path / "checkpoint.json").write_text("{not json")
    with pytest.raises(CourseError, match="corrupt"):
        read_checkpoint(tmp_path, "vae")


def test_weights_of_another_shape_are_refused(tmp_path):
    save_checkpoint(tmp_path, "vae", _model())
    checkpoint = read_checkpoint(tmp_path, "vae")
    with pytest.raises(CourseError, match="do not fit"):
        load_weights(ConvVAE(ConvVAEConfig(latent_dim=8, width=8)), checkpoint)


WRITER = textwrap.dedent("""
    import sys, torch
    from helpers.checkpoint import save_checkpoint
    from helpers.models import ConvVAE, ConvVAEConfig
    model = ConvVAE(ConvVAEConfig(latent_dim=4, width=8))
    optimizer = torch.optim.AdamW(model.parameters())
    epoch = 0
    while True:
        epoch += 1
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(epoch))
        save_checkpoint(sys.argv[1], "vae", model, epoch=epoch, step=epoch, optimizer=optimizer)
        print(epoch, flush=True)
""")


@pytest.mark.parametrize("delay", [0.0, 0.013, 0.05, 0.11])
def test_killed_while_writing_keeps_a_complete_checkpoint(tmp_path, delay):
    """SIGKILL a process that rewrites its checkpoint in a loop: what is left is complete and consistent."""
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert int(process.stdout.readline()) == 1  # the first checkpoint is on disk; now kill it mid-way through others
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoint = read_checkpoint(tmp_path, "vae")
    epoch = checkpoint.index["epoch"]
    assert epoch >= 1
    assert all(torch.all(w == float(epoch)) for w in checkpoint.weights.values() if w.is_floating_point())
    assert checkpoint.optimizer_state() is not None
    assert len(list(tmp_path.glob("model-*.safetensors"))) <= 2  # old files are cleaned up, at most one in flight
