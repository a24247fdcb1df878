"""CLIP trained from scratch on CelebA captions (notebook 03): tokenizer, training, evaluation, encoder.

- `CaptionTokenizer`: a WordPiece tokenizer (Hugging Face `tokenizers`) trained on our own captions.
- `train_clip`: faces + freshly drawn captions every batch -> `CLIPModel` with the course's Trainer.
- `evaluate_clip`: retrieval recall@k in both directions and zero-shot attribute classification.
- `ClipTextEncoder`: the trained model as a `TextEncoder` (and image encoder) for notebooks 04, 07 and 08.
The tokenizer travels inside the checkpoint's JSON, so a run folder is all a later notebook needs.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from helpers.checkpoint import load_or_train, read_checkpoint
from helpers.config import CourseConfig, Recipe, seed_everything
from helpers.data.captions import FACE_EXAMPLE, caption, zero_shot_prompts
from helpers.data.celeba import ATTRIBUTES, FaceSplits, load_celeba, to_float
from helpers.text.prompts import check_prompt
from helpers.metrics import balanced_accuracy
from helpers.models.clip import CLIPConfig, CLIPModel
from helpers.registry import ModelKind
from helpers.train import Checkpointing, Evaluate, ProgressBar, Trainer

PAD, UNK = "[PAD]", "[UNK]"


# ------------------------------------------------------------------------------------------ tokenizer
class CaptionTokenizer:
    """Lower-cased WordPiece: frequent words are single tokens, rare ones split into pieces ("##..")."""

    def __init__(self, backend):
        self.backend = backend
        self.pad_id = backend.token_to_id(PAD)

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int = 1000) -> "CaptionTokenizer":
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        backend = Tokenizer(models.WordPiece(unk_token=UNK))
        backend.normalizer = normalizers.BertNormalizer(lowercase=True)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # split on spaces and punctuation
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK], show_progress=False)
        backend.train_from_iterator(texts, trainer)
        return cls(backend)

    @classmethod
    def from_str(cls, text: str) -> "CaptionTokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(text))

    def to_str(self) -> str:
        return self.backend.to_str()

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def __call__(self, texts: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (ids, mask), both (len(texts), T) with T = the longest text (at most max_tokens)."""
        encodings = self.backend.encode_batch(list(texts))
        length = max(1, min(max_tokens, max(len(e.ids) for e in encodings)))
        ids = torch.zeros(len(texts), length, dtype=torch.long)
        for row, encoding in enumerate(encodings):
            tokens = encoding.ids[:length]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return ids, (ids != self.pad_id).long()

    def unknown_words(self, text: str) -> list[str]:
        """Words of `text` that never appeared in the captions: the model only sees them as sub-word pieces."""
        words = self.backend.pre_tokenizer.pre_tokenize_str(self.backend.normalizer.normalize_str(text))
        return [w for w, _ in words if w.isalpha() and self.backend.token_to_id(w) is None]


def caption_corpus(attrs: torch.Tensor, seed: int, per_image: int = 4) -> list[str]:
    """Several random captions per face: what the tokenizer learns its vocabulary from."""
    rng = random.Random(seed)
    rows = attrs.tolist()
    return [caption(row, rng) for _ in range(per_image) for row in rows]


# ------------------------------------------------------------------------------------------ training
def face_data(cfg: CourseConfig) -> FaceSplits:
    return _faces(cfg)


_FACE_CACHE: dict = {}


def _faces(cfg: CourseConfig) -> FaceSplits:
    key = (cfg.mode, str(cfg.local_data), str(cfg.data_root))
    if key not in _FACE_CACHE:
        _FACE_CACHE[key] = load_celeba(cfg)
    return _FACE_CACHE[key]


def clip_loss_fn(tokenizer: CaptionTokenizer, max_tokens: int):
    """Each batch: a fresh random caption per face (new synonyms, order, subset), a random horizontal flip."""

    def loss_fn(trainer: Trainer, batch) -> dict[str, torch.Tensor]:
        images, attrs, _ = batch
        rng = random.Random(trainer.seed * 1_000_003 + trainer.step)  # a function of the step: resumable
        texts = [caption(row, rng) for row in attrs.round().long().tolist()]
        ids, mask = tokenizer(texts, max_tokens)
        same = torch.tensor([[a == b for b in texts] for a in texts], device=images.device)
        flip = torch.rand(len(images), device=images.device) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        return trainer.model(images, ids.to(images.device), mask.to(images.device), same_caption=same)

    return loss_fn


def train_clip(cfg: CourseConfig, out: str | Path | None = None, *, epochs: int | None = None,
               time_budget: float | str | None = None,
               resume: bool = False, progress: bool = True, data: FaceSplits | None = None,
               batch_size: int | None = None) -> Trainer:
    """Train our CLIP on the faces of this mode into `out` (default runs/clip)."""
    recipe = cfg.recipe("clip", epochs=epochs, batch_size=batch_size)
    out = Path(out or cfg.run_dir("clip"))
    data = data or face_data(cfg)
    seed_everything(cfg.seed)
    tokenizer = CaptionTokenizer.train(caption_corpus(data.train_attrs, cfg.seed))
    config = CLIPConfig(vocab_size=tokenizer.vocab_size, image_size=data.image_size, image_width=recipe.width,
                        text_width=4 * recipe.width, embed_dim=recipe.latent_dim)
    model = CLIPModel(config)
    heldout = data.test_images[:256], data.test_attrs[:256]

    def heldout_metrics(model: CLIPModel) -> dict[str, float]:
        encoder = ClipTextEncoder(model, tokenizer)
        scores = evaluate_clip(encoder, *heldout, attributes_only=True)
        return {"zero_shot_mean": scores["zero_shot_mean"], "temperature": model.temperature()}

    callbacks = [Evaluate(heldout_metrics),
                 Checkpointing(out, "clip", resume=resume,
                               extra={"mode": cfg.mode, "recipe": asdict(recipe), "data": data.source,
                                      "tokenizer": tokenizer.to_str()})]
    if progress:
        callbacks.append(ProgressBar(("loss", "batch_accuracy")))
    trainer = Trainer(model, clip_loss_fn(tokenizer, config.max_tokens), data.train_set(), epochs=recipe.epochs,
                      batch_size=recipe.batch_size, lr=recipe.lr, device=cfg.device, callbacks=callbacks,
                      seed=cfg.seed, time_budget=time_budget, weight_decay=0.05, lr_schedule="cosine")
    trainer.fit()
    trainer.tokenizer = tokenizer
    return trainer


# ------------------------------------------------------------------------------------------ encoder
class ClipTextEncoder:
    """Our trained CLIP as a frozen `TextEncoder` (`encode`), with its image side next to it."""

    name = "clip-celeba"

    def __init__(self, model: CLIPModel, tokenizer: CaptionTokenizer):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.dim = model.config.embed_dim
        self.token_dim = model.config.text_width

    @classmethod
    def from_checkpoint(cls, run_dir: str | Path, device: torch.device | str = "cpu") -> "ClipTextEncoder":
        checkpoint = read_checkpoint(run_dir, "clip")
        tokenizer = CaptionTokenizer.from_str(checkpoint.index["extra"]["tokenizer"])
        model = checkpoint.rebuild(CLIPModel)
        encoder = cls(model.to(device), tokenizer)
        encoder.name = f"clip-{checkpoint.index['sha256']['model'][:12]}"  # cached embeddings are per trained CLIP
        return encoder

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def check_prompt(self, text: str) -> None:
        """Refuse empty or overlong prompts; warn (stderr) about words the CLIP never saw."""
        check_prompt(text, FACE_EXAMPLE)
        unknown = self.tokenizer.unknown_words(text)
        if unknown:
            warnings.warn(f"words the CLIP never saw in its captions, read only as sub-word pieces: "
                          f"{', '.join(sorted(set(unknown)))}", stacklevel=2)

    def tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokenizer(texts, self.model.config.max_tokens)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 512) -> torch.Tensor:
        """(len(texts), embed_dim) unit vectors on the CPU."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            ids, mask = self.tokens(texts[start:start + batch_size])
            chunks.append(self.model.encode_text(ids.to(self.device), mask.to(self.device)).float().cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, self.dim)

    @torch.no_grad()
    def encode_tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token states (B, T, token_dim) and mask (B, T): the context of a cross-attention UNet."""
        ids, mask = self.tokens(texts)
        return self.model.text_tokens(ids.to(self.device), mask.to(self.device)).float().cpu(), mask

    @torch.no_grad()
    def condition(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What a text-conditioned UNet reads (notebook 07), on the encoder's device: token states (B, T, token_dim),
        their mask (B, T) and the pooled sentence vector (B, embed_dim), from one pass of the text tower."""
        ids, mask = self.tokens(texts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        states = self.model.text_tokens(ids, mask)
        return states, mask, self.model.pool_text(states, mask)

    @torch.no_grad()
    def _images(self, images: torch.Tensor, fn, batch_size: int = 256) -> torch.Tensor:
        chunks = []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            batch = to_float(batch) if batch.dtype == torch.uint8 else batch
            chunks.append(fn(batch.to(self.device)).float().cpu())
        return torch.cat(chunks)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [-1, 1] float images (N, 3, S, S) -> (N, embed_dim) unit vectors."""
        return self._images(images, self.model.encode_image)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled CNN features before the projection: the feature space of our offline FID/KID."""
        return self._images(images, self.model.image)


def load_clip(cfg: CourseConfig, run_dir: str | Path | None = None) -> ClipTextEncoder:
    return ClipTextEncoder.from_checkpoint(run_dir or cfg.run_dir("clip"), cfg.device)


def load_or_train_clip(cfg: CourseConfig, run_dir: str | Path | None = None, progress: bool = False,
                       data: FaceSplits | None = None) -> ClipTextEncoder:
    """The CLIP of notebook 03 if it was trained in this mode on these faces (`data`, default the mode's),
    else train it now (quick mode: about a minute)."""
    run_dir = Path(run_dir or cfg.run_dir("clip"))
    data = data or face_data(cfg)

    def train() -> ClipTextEncoder:
        print(f"no {cfg.mode}-mode CLIP trained on these faces in {run_dir}: training one "
              f"(notebook 03 / `python -m helpers train clip`)")
        trainer = train_clip(cfg, run_dir, progress=progress, data=data)
        return ClipTextEncoder(trainer.model, trainer.tokenizer)

    return load_or_train(run_dir, "clip", mode=cfg.mode, source=data.source, train=train,
                         load=lambda folder: ClipTextEncoder.from_checkpoint(folder, cfg.device))


# ------------------------------------------------------------------------------------------ evaluation
def recall_at_k(similarity: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """similarity[i, j] of query i and candidate j; query i's right answer is candidate i."""
    right = similarity.diagonal().unsqueeze(1)
    rank = (similarity > right).sum(1)  # how many candidates beat the right one (0 = first place)
    return {k: float((rank < k).float().mean()) for k in ks}


def zero_shot_scores(encoder: ClipTextEncoder, image_vectors: torch.Tensor) -> torch.Tensor:
    """(N, 40): similarity to "has attribute" prompts minus similarity to "has not" prompts (> 0 = has it)."""
    columns = []
    for attribute in ATTRIBUTES:
        positive, negative = zero_shot_prompts(attribute)
        pos = torch.nn.functional.normalize(encoder.encode(positive).mean(0), dim=0)
        neg = torch.nn.functional.normalize(encoder.encode(negative).mean(0), dim=0)
        columns.append(image_vectors @ (pos - neg))
    return torch.stack(columns, dim=1)


def evaluate_clip(encoder: ClipTextEncoder, images: torch.Tensor, attrs: torch.Tensor,
                  attributes_only: bool = False, seed: int = 0) -> dict:
    """Retrieval recall@1/5/10 (text->image, image->text) and zero-shot balanced accuracy per attribute.

    Retrieval uses one canonical caption per held-out face, so the task is "find the face this sentence
    describes among all held-out faces" — many faces share a description, so R@1 is bounded well below 1.
    """
    was_training = encoder.model.training
    encoder.model.eval()
    image_vectors = encoder.encode_images(images)
    balanced = balanced_accuracy(zero_shot_scores(encoder, image_vectors) > 0, attrs.bool())
    result: dict = {"zero_shot": dict(zip(ATTRIBUTES, balanced.tolist())),
                    "zero_shot_mean": float(balanced.nanmean())}
    if not attributes_only:
        rng = random.Random(seed)
        texts = [caption(row, rng, canonical=True) for row in attrs.long().tolist()]
        similarity = encoder.encode(texts) @ image_vectors.T  # (texts, images)
        result["text_to_image"] = recall_at_k(similarity)
        result["image_to_text"] = recall_at_k(similarity.T)
        result["chance_at_10"] = 10 / len(images)
    encoder.model.train(was_training)
    return result


# ------------------------------------------------------------------------------------------ the registry's entry
def _cli_train_clip(cfg: CourseConfig, out: Path, options) -> None:
    trainer = train_clip(cfg, out, epochs=options.epochs, resume=options.resume)
    if trainer.history:
        print(f"held-out zero-shot balanced accuracy (mean of 40 attributes): "
              f"{trainer.history[-1]['zero_shot_mean']:.3f}; full report: python -m helpers evaluate --model clip")


def _evaluate_clip(cfg: CourseConfig, encoder: ClipTextEncoder, options) -> None:
    faces = face_data(cfg)
    scores = evaluate_clip(encoder, faces.test_images, faces.test_attrs)
    print(f"held-out faces: {len(faces.test_images)} ({faces.source}); chance R@10 {scores['chance_at_10']:.3f}")
    for direction in ("text_to_image", "image_to_text"):
        print(f"{direction:14s} " + "  ".join(f"R@{k} {v:.3f}" for k, v in scores[direction].items()))
    ranked = sorted(scores["zero_shot"].items(), key=lambda kv: -kv[1])
    print("zero-shot balanced accuracy: " + ", ".join(f"{a} {v:.2f}" for a, v in ranked))
    print(f"zero-shot mean over 40 attributes: {scores['zero_shot_mean']:.3f}")


def _measure_clip(cfg: CourseConfig, encoder: ClipTextEncoder, n: int, seed: int) -> dict:
    faces = face_data(cfg)
    scores = evaluate_clip(encoder, faces.test_images, faces.test_attrs)
    return {"metric": "text->image R@10 (zero-shot attribute mean)", "value": scores["text_to_image"][10],
            "n": len(faces.test_images), "baseline": scores["chance_at_10"], "baseline_name": "chance",
            "extra": scores["zero_shot_mean"]}


# Training settings of each model in each mode (`cfg.recipe(name)` reads them; see helpers.config.Recipe).
RECIPES: dict[str, dict[str, Recipe]] = {
    # CelebA track (notebooks 03-04): 4,500 real local faces or 4,000 procedural ones in quick mode.
    "clip": {  # width = CNN stem channels (text transformer width 4x), latent_dim = shared embedding size
        "quick": Recipe(epochs=12, batch_size=64, lr=1e-3, width=16, latent_dim=128),
        "full": Recipe(epochs=30, batch_size=256, lr=5e-4, width=32, latent_dim=128),
    },
}


KINDS = (ModelKind("clip", "03", "CLIP from scratch on face captions", train=_cli_train_clip,
                   load=lambda cfg, run: load_clip(cfg, run), evaluate=_evaluate_clip, domain="faces",
                   measure=_measure_clip),)
