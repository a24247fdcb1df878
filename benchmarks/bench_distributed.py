"""Issue 7's benchmark: training throughput of one process vs several under `accelerate launch` (DDP).

The same model and step (notebook 01's VAE, or notebook 08's sketch CVAE) timed over `--batches` batches after a
warm-up, first in 1 process, then in N processes launched by `accelerate launch` (gloo on a CPU, NCCL on GPUs).
Each process takes the recipe's batch, so N processes see N times the images per step. Prints images/s per rank
and in total, and the scaling efficiency (total with N / (N x one process)).

    COURSE_DATA=../shared/data COURSE_QUICK=1 python -m benchmarks.bench_distributed --processes 2
    python -m benchmarks.bench_distributed --processes 8 --model sketch-cvae     # on an 8-GPU machine

On a 2-core CPU the comparison is fair only per core: 1 process gets both cores (2 threads), each of 2 processes
gets one (OMP_NUM_THREADS=1), so the total can at best stay level; on a multi-GPU machine each rank has a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def child(model_name: str, batches: int, out: Path) -> None:
    """One process of the measurement (rank from the launcher's environment)."""
    from helpers.config import get_config, seed_everything
    from benchmarks._common import Stopwatch
    from helpers.train import Trainer

    cfg = get_config()
    seed_everything(cfg.seed)
    if model_name == "vae":
        from helpers.digits import digit_data, vae_loss_fn
        from helpers.models import ConvVAE, ConvVAEConfig

        recipe = cfg.recipe("vae")
        model, loss_fn, data = ConvVAE(ConvVAEConfig(latent_dim=recipe.latent_dim, width=recipe.width)), vae_loss_fn, \
            digit_data(cfg).train_set()
    else:
        from helpers import sketch as sk
        from helpers.models.sketch import SketchCVAE, SketchCVAEConfig

        recipe = cfg.recipe(sk.KIND)
        sketches = sk.sketch_data(cfg)
        encoder, _ = sk.load_sketch_encoder(cfg, "ours", sketches)
        bank, index = sk.condition_bank(encoder, sketches.train_captions, cfg.data_root / "cache" / "text")
        model = SketchCVAE(SketchCVAEConfig(cond_dim=bank.shape[1], latent_dim=recipe.latent_dim, width=recipe.width))
        loss_fn, data = sk.sketch_loss_fn(bank, index, recipe.beta), sketches.train_set()

    watch = Stopwatch(warmup=3, batches=batches)
    trainer = Trainer(model, loss_fn, data, epochs=100, batch_size=recipe.batch_size, lr=recipe.lr,
                      device=cfg.device, callbacks=[watch], seed=cfg.seed)
    trainer.fit()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{trainer.rank}.json").write_text(json.dumps(
        {"rank": trainer.rank, "world_size": trainer.world_size, "images_per_s": watch.rate,
         "batch_size": trainer.batch_size, "threads": torch.get_num_threads(), "device": str(trainer.device)}))


def launch(processes: int, args, out: Path) -> list[dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = max(1, (os.cpu_count() or 1) // processes)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    script = [str(Path(__file__).resolve()), "--child", "--model", args.model, "--batches", str(args.batches),
              "--out", str(out)]
    # --multi_gpu goes through torch.distributed.run; without a GPU every process takes the CPU and gloo
    # (accelerate's --cpu flag starts a single process).
    multi = ["--multi_gpu"] if processes > 1 else []
    command = [sys.executable, "-m", "accelerate.commands.launch", *multi, "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(port), *script]
    subprocess.run(command, env=env, check=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--model", choices=("vae", "sketch-cvae"), default="vae")
    parser.add_argument("--batches", type=int, default=100, help="timed batches per process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-distributed"))
    args = parser.parse_args()
    if args.child:
        child(args.model, args.batches, Path(args.out))
        return

    from benchmarks._common import write_results

    results: dict = {"model": args.model, "batches": args.batches, "runs": {}}
    for processes in sorted({1, args.processes}):
        ranks = launch(processes, args, Path(args.out) / f"p{processes}")
        total = sum(r["images_per_s"] for r in ranks)
        results["runs"][str(processes)] = {"per_rank_images_per_s": [round(r["images_per_s"], 1) for r in ranks],
                                           "total_images_per_s": round(total, 1), "threads_per_process":
                                           ranks[0]["threads"], "device": ranks[0]["device"],
                                           "batch_per_process": ranks[0]["batch_size"]}
        print(f"{processes} process(es): per rank " + ", ".join(f"{r['images_per_s']:.0f}" for r in ranks)
              + f" img/s; total {total:.0f} img/s ({ranks[0]['threads']} thread(s) each, {ranks[0]['device']})",
              flush=True)
    one = results["runs"]["1"]["total_images_per_s"]
    many = results["runs"][str(args.processes)]["total_images_per_s"]
    results["scaling_efficiency"] = round(many / (args.processes * one), 3)
    print(f"scaling efficiency with {args.processes} processes: {results['scaling_efficiency']:.0%} "
          f"(total {many:.0f} vs {args.processes} x {one:.0f} img/s)")
    write_results(f"distributed_{args.model}", results)


if __name__ == "__main__":
    main()
