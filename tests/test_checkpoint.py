"""Checkpoints: round trip, atomic under SIGKILL, and clear errors for missing, corrupt or foreign ones."""
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import helpers.checkpoint as checkpoint_module
from helpers.checkpoint import (load_or_train, load_weights, read_checkpoint, read_index, record_run, recorded_run,
                               save_checkpoint)
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
    # Adam's moments and step counts come back, so a resumed run takes the same next step
    saved, loaded = optimizer.state_dict(), fresh.state_dict()
    assert saved["state"].keys() == loaded["state"].keys() and len(saved["state"]) == len(list(model.parameters()))
    for param_id, slots in saved["state"].items():
        assert set(slots) == {"step", "exp_avg", "exp_avg_sq"}
        for name, value in slots.items():
            assert torch.equal(value, loaded["state"][param_id][name]), (param_id, name)
    assert any(slots["exp_avg_sq"].abs().sum() > 0 for slots in loaded["state"].values())
    assert loaded["param_groups"] == saved["param_groups"]
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


def test_metadata_reads_hash_no_tensor(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "clip", "clip", _model())
    record = record_run(tmp_path / "clip", "clip", "clip")

    def no_hashing(path):
        raise AssertionError(f"hashed {path}")

    monkeypatch.setattr(checkpoint_module, "_sha256", no_hashing)
    assert read_index(tmp_path / "clip", "clip")["kind"] == "clip"
    assert recorded_run(record, "clip", "clip", "retrain") == (tmp_path / "clip").resolve()
    assert record_run(tmp_path / "clip", "clip", "clip") == record
    with pytest.raises(AssertionError, match="hashed"):  # reading the weights still verifies them
        read_checkpoint(tmp_path / "clip", "clip")
    with pytest.raises(CourseError, match="holds a 'clip' checkpoint, not 'vae'"):
        read_index(tmp_path / "clip", "vae")
    (tmp_path / "clip" / "checkpoint.json").write_text('{"kind": "clip"}')
    with pytest.raises(CourseError, match="corrupt"):
        read_index(tmp_path / "clip")


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


def test_one_reuse_policy_for_judges_and_encoders(tmp_path, capsys):
    def policy(mode="quick", source="digits-5k", kind="judge", accept=lambda extra: True):
        return load_or_train(tmp_path / "judge", kind, mode=mode, source=source, load=lambda folder: "loaded",
                             train=lambda: "trained", accept=accept)

    assert policy() == "trained"  # nothing there yet
    save_checkpoint(tmp_path / "judge", "judge", _model(), extra={"mode": "quick", "data": "digits-5k", "size": 28})
    assert policy() == "loaded"
    assert policy(mode="full") == "trained"  # a quick-mode judge never grades a full-mode run
    assert policy(source="mnist-60k") == "trained"  # nor one of other data
    assert policy(accept=lambda extra: extra["size"] == 32) == "trained"  # nor one the caller cannot use
    save_checkpoint(tmp_path / "judge", "judge", _model(), extra={"mode": "full", "data": "digits-5k"})
    assert policy(mode="quick") == policy(mode="full") == "loaded"  # a full-mode judge serves both modes
    with pytest.raises(CourseError, match="holds a 'judge' checkpoint, not 'clip'"):  # never trained over
        policy(kind="clip")
    (tmp_path / "judge" / "checkpoint.json").write_text("{not json")
    assert policy() == "trained"  # damaged: replaced, and said so
    assert "not reusing" in capsys.readouterr().out


def test_rebuild_from_the_saved_config(tmp_path):
    from helpers.models.unet import UNet, UNetConfig

    torch.manual_seed(0)
    unet = UNet(UNetConfig(width=8, mults=(1, 2), blocks=(1, 1), attention_levels=(), num_classes=3))
    ema = {f"ema.{k}": v + 1 for k, v in unet.state_dict().items()}
    save_checkpoint(tmp_path, "cifar-ddpm", unet, extra_tensors=ema)
    checkpoint = read_checkpoint(tmp_path, "cifar-ddpm")
    raw, averaged = checkpoint.rebuild(UNet), checkpoint.rebuild(UNet, ema=True)
    assert raw.config == unet.config and not raw.training
    for name, value in unet.state_dict().items():
        assert torch.equal(raw.state_dict()[name], value) and torch.equal(averaged.state_dict()[name], value + 1)
    save_checkpoint(tmp_path / "plain", "vae", _model())
    plain = read_checkpoint(tmp_path / "plain", "vae")
    assert plain.rebuild(ConvVAE).config == _model().config
    with pytest.raises(CourseError, match="holds no EMA weights"):
        plain.rebuild(ConvVAE, ema=True)
    with pytest.raises(CourseError, match="does not fit a UNet"):
        plain.rebuild(UNet)
