"""Verification of the papers' FID (`helpers.metrics.standard_fid`, network in `helpers.fid`) on real CIFAR-10.

Three numbers, all on the FID-Inception network's 2048-d features:
1. `--n` training photos against `--n` held-out photos: two samples of one distribution, so what is left is FID's
   small-sample bias. The published reference is about 3.1 for CIFAR-10's 50,000 training images against its
   10,000 test images; FID is biased upwards at small N (its covariances are estimated from N images in 2,048
   dimensions), so expect more at 5,000 and far more at a few hundred.
2. the held-out photos against the same photos blurred (Gaussian, `--blur` pixels sigma) and
3. against the same photos with added Gaussian noise (`--noise`, as a share of the 0-255 range): damage the
   network sees. At a few hundred images FID's bias is most of every number and a mild blur can read no higher
   than row 1 (measured at 100 a side: 164.8 blurred against 169.2 for train vs held-out); use thousands.
Each FID is also measured on nested subsets (N/4, N/2, N) and extrapolated to infinite N by a straight-line fit in
1/N (FID's bias falls as 1/N once N exceeds the 2,048 feature dimensions: Chong & Forsyth 2020, "Effectively
Unbiased FID"), which can be set against the published 50,000-vs-10,000 value directly; it needs --n >= 4,096 (the
default 5,000 fits 2,500 and 5,000). Measured on the CPU at 500 a side (`--tag _cpu_500`, 171 ms an image): FID
75.5 / 102.7 / 173.7 (train vs held-out / blurred / noisy), KID x1000 -0.41 / 42.0 / 144.0.
Beside each FID, KID on the same features (`kernel_inception_distance`, unbiased: about 0 for two samples of one
distribution at any N), which shows the damage even where FID's bias hides it (at 100 a side: -0.001 for train vs
held-out, 0.043 blurred, 0.146 noisy).
The local CIFAR-10 (COURSE_DATA's cifar10_train_jpeg.tar.gz) holds the 50,000 training photos as JPEGs, the last
500 of every class held out; both sides are JPEG-decoded alike.

    COURSE_DATA=../shared/data python -m benchmarks.bench_fid       # 5,000 a side: 20,000 images, a GPU's job
    OMP_NUM_THREADS=1 COURSE_DATA=../shared/data python -m benchmarks.bench_fid --n 100 --threads 1 --tag _cpu_check
                                                                    # a CPU check: about 0.3 s an image on one core
"""
from __future__ import annotations

import argparse
import time

import torch
import torchvision.transforms.functional as TF

from benchmarks._common import write_results
from helpers.config import get_config
from helpers.data.cifar10 import load_cifar10
from helpers.fid import FEATURES, NETWORK_SHA1, inception_features, network_path
from helpers.metrics import frechet_distance, kernel_inception_distance

PUBLISHED_TRAIN_VS_TEST = 3.1  # CIFAR-10, 50,000 training vs 10,000 test images, as papers quote it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="images a side (at most the 5,000 held out)")
    parser.add_argument("--blur", type=float, default=1.0, help="Gaussian blur sigma in pixels of the 32x32 photos")
    parser.add_argument("--noise", type=float, default=0.05, help="added Gaussian noise std, share of 0-255")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = get_config(quick=False)
    if cfg.local_data is None:
        parser.error("set COURSE_DATA to the folder holding cifar10_train_jpeg.tar.gz (e.g. ../shared/data)")
    data = load_cifar10(cfg, source="local")
    n = min(args.n, len(data.test_images), len(data.train_images))
    if n < args.n:
        print(f"only {n:,} held-out photos: --n {args.n:,} cut to {n:,}")
    generator = torch.Generator().manual_seed(args.seed)
    train = data.train_images[torch.randperm(len(data.train_images), generator=generator)[:n]]
    heldout = data.test_images[torch.randperm(len(data.test_images), generator=generator)[:n]]
    photos = heldout.float() / 255
    kernel = 2 * int(3 * args.blur + 0.5) + 1
    blurred = TF.gaussian_blur(photos, [kernel, kernel], [args.blur, args.blur])
    noisy = (photos + args.noise * torch.randn(photos.shape, generator=generator)).clamp(0, 1)
    print(f"FID-Inception network {network_path()} (sha1 {NETWORK_SHA1[:12]}...), device {cfg.device}, "
          f"{torch.get_num_threads()} CPU threads")

    start = time.perf_counter()
    features = {name: inception_features(images, cfg.device, args.batch_size)
                for name, images in (("train", train), ("held-out", heldout), ("blurred", blurred), ("noisy", noisy))}
    seconds = time.perf_counter() - start
    pairs = {"train vs held-out": ("train", "held-out"),
             f"held-out vs blurred (sigma {args.blur:g} px)": ("held-out", "blurred"),
             f"held-out vs noisy (std {args.noise:g})": ("held-out", "noisy")}
    rows, kid, infinite = {}, {}, {}
    sizes = [n // 4, n // 2, n]
    fit_sizes = [m for m in sizes if m >= FEATURES]  # the 1/N law holds only once covariances have full rank
    for name, (a, b) in pairs.items():
        rows[name] = frechet_distance(features[a], features[b])
        # FID is biased by about k / N: fit FID(N) = FID_inf + k / N on nested subsets (Chong & Forsyth 2020)
        by_size = {m: frechet_distance(features[a][:m], features[b][:m]) for m in sizes}
        fid_inf = None
        if len(fit_sizes) >= 2:
            design = torch.tensor([[1.0, 1 / m] for m in fit_sizes], dtype=torch.float64)
            fit = torch.linalg.lstsq(design, torch.tensor([[by_size[m]] for m in fit_sizes], dtype=torch.float64))
            fid_inf = fit.solution[0, 0].item()
        infinite[name] = {"fid_at": by_size, "fid_infinite_n": fid_inf}
        kid[name] = kernel_inception_distance(features[a], features[b], subset_size=min(1000, max(2, n // 2)),
                                              seed=args.seed)  # half the images a subset: a spread even at small N
    images = sum(len(f) for f in features.values())
    print(f"\n| pair ({n:,} images a side, {data.source}) | FID at {' / '.join(f'{m:,}' for m in sizes)} | "
          f"FID extrapolated to infinite N | KID (x1000) |\n|---|---|---|---|")
    for name, value in rows.items():
        at = " / ".join(f"{v:.2f}" for v in infinite[name]["fid_at"].values())
        inf = infinite[name]["fid_infinite_n"]
        inf = f"{inf:.2f}" if inf is not None else f"needs N/2 >= {FEATURES:,}"
        print(f"| {name} | {at} | {inf} | {1000 * kid[name][0]:.2f} ± "
              f"{1000 * kid[name][1]:.2f} |")
    print(f"| published: CIFAR-10 train 50,000 vs test 10,000 | ~{PUBLISHED_TRAIN_VS_TEST} | | |")
    print(f"\nsmaller N inflates FID (biased upwards: covariances from {n:,} images in 2,048 dimensions), so train vs "
          f"held-out at {n:,} a side reads above ~{PUBLISHED_TRAIN_VS_TEST} and at small N hides mild damage; KID "
          f"(unbiased) reads ~0 for train vs held-out and above it for the damaged copies. Features of {images:,} images in {seconds:.0f} s "
          f"({1000 * seconds / images:.0f} ms an image).")
    write_results(f"fid{args.tag}", {"n": n, "data": data.source, "device": str(cfg.device), "blur_sigma": args.blur,
                                     "noise_std": args.noise, "seed": args.seed, "fid": rows, "fid_by_n": infinite,
                                     "kid_mean_std": {k: list(v) for k, v in kid.items()},
                                     "published_train_vs_test_50k_10k": PUBLISHED_TRAIN_VS_TEST,
                                     "feature_seconds": round(seconds, 1), "network_sha1": NETWORK_SHA1})


if __name__ == "__main__":
    main()
