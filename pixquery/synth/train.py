"""Train the `mini` model on ShapesWorld (`pixquery train-mini`), save it and export the immich ONNX layout.

Loss: CLIP's symmetric InfoNCE with a learned temperature, with false negatives masked. At batch sizes a CPU can
afford (256), the softmax over the batch is the stronger and better-understood signal; SigLIP's sigmoid loss pays
off mainly at very large or sharded batches. ShapesWorld captions are often true of many images ("a grey
background", "two shapes"), so before the softmax every *other* pair whose caption is true of the image (decided
from fact vectors, see mini_data) is removed from the denominator: it is neither a positive target nor pushed away.

Hard negatives come from the batch layout: each batch is pairs of a scene and its one-edit twin (mini_data), so
the model must tell "a red star above a blue circle" from "a blue star above a red circle" in both directions.

Reproducibility: the data pool is a function of (seed, n_pairs, held-out set); weights are initialised after
torch.manual_seed(seed); batches come from a torch.Generator seeded with seed. Given a step count, two runs give
identical weights. With only a time budget, the step count is fixed once after timing a few warm-up steps and
logged, so `steps=` reproduces that run exactly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pixquery.models.export import write_immich_layout
from pixquery.models.preprocess import PreprocessConfig
from pixquery.models.tokenize import TextTokenizer
from pixquery.synth.edits import all_words
from pixquery.synth.mini_data import ATTRIBUTE_GROUPS, Pool, build_pool, truth_matrix
from pixquery.synth.mini_eval import evaluate, make_gallery
from pixquery.synth.mini_model import (
    IMAGE_MEAN,
    IMAGE_STD,
    ImageEncoderForExport,
    MiniCLIP,
    MiniConfig,
    TextEncoderForExport,
)
from pixquery.synth.tokenizer import DEFAULT_CONTEXT_LENGTH, PAD, build_tokenizer, encode_batch
from pixquery.synth.world import DEFAULT_HELDOUT, HeldOut, parse_heldout

EXPORT_RESERVE_S = 40.0
"""Seconds of the time budget kept for the final evaluation and the ONNX export."""
TIMING_STEPS = 4


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 5% of peak; depends only on (step, total), never on the clock."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def _to_model_input(images_u8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (images_u8.float() / 255.0 - mean) / std


def clip_loss_masked(
    image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor, true_pairs: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE where pair (i, i) is the target and other true pairs are left out of the softmax.

    `true_pairs[t, i]` says caption t is true of image i (texts x images).
    """
    n = image_emb.shape[0]
    logits = logit_scale.exp().clamp(max=100.0) * text_emb @ image_emb.T
    eye = torch.eye(n, dtype=torch.bool)
    ignore = true_pairs & ~eye
    logits = logits.masked_fill(ignore, float("-inf"))
    target = torch.arange(n)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def attribute_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the attribute groups; `logits` hold every group's classes side by side."""
    losses = []
    start = 0
    for g, (_, n_classes) in enumerate(ATTRIBUTE_GROUPS):
        losses.append(F.cross_entropy(logits[:, start : start + n_classes], targets[:, g]))
        start += n_classes
    return torch.stack(losses).mean()


class _Batches:
    """Deterministic batches of (scene, twin) pairs with one random caption per image."""

    def __init__(self, pool: Pool, tokens: torch.Tensor, batch_size: int, seed: int) -> None:
        self.pool, self.tokens, self.batch_size = pool, tokens, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.n_pairs = len(pool) // 2

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        pairs = torch.randperm(self.n_pairs, generator=self.generator)[: self.batch_size // 2]
        rows = torch.stack([2 * pairs, 2 * pairs + 1], dim=1).reshape(-1)
        k = torch.randint(self.tokens.shape[1], (len(rows),), generator=self.generator)
        ids = self.tokens[rows, k]
        ids = ids[:, : int((ids != 0).sum(dim=1).max())]  # trim shared padding: the tower masks it anyway
        truth = truth_matrix(self.pool.caption_facts[rows, k], self.pool.image_facts[rows])
        return _to_model_input(self.pool.images[rows]), ids, truth, self.pool.attributes[rows]


def _progress(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]training mini"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        disable=not enabled,
    )


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Decay matrices and conv kernels only; norms, biases, embeddings-as-positions and the temperature stay free.
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "position" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "position" not in n)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def train_mini(
    out_dir: Path,
    minutes: float = 12,
    seed: int = 0,
    heldout: HeldOut = DEFAULT_HELDOUT,
    *,
    steps: int | None = None,
    n_pairs: int = 20_000,
    n_captions: int = 6,
    batch_size: int = 256,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    warmup: int = 60,
    aux_weight: float = 5.0,
    config: dict[str, Any] | None = None,
    threads: int = 2,
    workers: int = 2,
    eval_scenes: int = 400,
    export: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a mini model into `out_dir` (mini.pt, onnx/, train_log.json) and return the training log.

    `minutes` bounds the whole run (pool generation, training, evaluation, export); `steps` fixes the number
    of optimiser steps instead (reproducible across machines). `config` overrides MiniConfig fields.
    """
    start = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)

    tokenizer = build_tokenizer(all_words(), DEFAULT_CONTEXT_LENGTH)
    pool = build_pool(n_pairs, seed, heldout, n_captions=n_captions, workers=workers)
    flat = [text for caps in pool.captions for text in caps]
    tokens = torch.tensor(encode_batch(tokenizer, flat), dtype=torch.int32).view(len(pool), n_captions, -1)
    pool_seconds = time.monotonic() - start

    cfg = MiniConfig(vocab_size=tokenizer.get_vocab_size(), context_length=DEFAULT_CONTEXT_LENGTH,
                     pad_id=tokenizer.token_to_id(PAD),
                     aux_outputs=sum(n for _, n in ATTRIBUTE_GROUPS) if aux_weight else 0,
                     **(config or {}))
    model = MiniCLIP(cfg)
    optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    batches = _Batches(pool, tokens, batch_size, seed)

    total = steps
    losses: list[float] = []
    model.train()
    with _progress(progress) as bar:
        task = bar.add_task("train", total=total or 0, loss=float("nan"))
        step = 0
        timing_start = time.monotonic()
        while total is None or step < total:
            if total is None and step == TIMING_STEPS:
                per_step = (time.monotonic() - timing_start) / TIMING_STEPS
                left = minutes * 60 - (time.monotonic() - start) - EXPORT_RESERVE_S
                total = max(TIMING_STEPS + 1, TIMING_STEPS + int(left / per_step))
                bar.update(task, total=total)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, total or 10**9, lr, warmup)
            images, ids, truth, attributes = batches.next()
            image_emb, aux_logits = model.image_embedding_and_aux(images)
            loss = clip_loss_masked(image_emb, model.encode_text(ids), model.logit_scale, truth)
            if aux_logits is not None:
                loss = loss + aux_weight * attribute_loss(aux_logits, attributes)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            bar.update(task, advance=1, loss=float(np.mean(losses[-20:])))
    train_seconds = time.monotonic() - start - pool_seconds
    model.eval()

    torch.save({"config": cfg.to_dict(), "state_dict": model.state_dict()}, out_dir / "mini.pt")
    tokenizer_path = out_dir / "tokenizer.json"
    tokenizer.save(str(tokenizer_path))
    quick = quick_eval(model, tokenizer_path, heldout, eval_scenes, seed) if eval_scenes else {}
    if export:
        export_onnx(model, tokenizer_path, out_dir / "onnx")
    log = {
        "seed": seed,
        "minutes_budget": minutes,
        "steps": step,
        "batch_size": batch_size,
        "n_pairs": n_pairs,
        "n_images": len(pool),
        "n_captions": n_captions,
        "lr": lr,
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "loss_curve": [round(float(np.mean(losses[i : i + 50])), 4) for i in range(0, len(losses), 50)],
        "pool_seconds": round(pool_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "total_minutes": round((time.monotonic() - start) / 60, 2),
        "heldout": heldout.to_dict(),
        "heldout_spec": heldout.to_spec(),
        "config": cfg.to_dict(),
        "quick_eval": quick,
        "torch": torch.__version__,
    }
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    return log


def _torch_encoders(model: MiniCLIP, tokenizer_path: Path) -> tuple[Any, Any]:
    from pixquery.synth.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    if tokenizer.padding is None:  # an exported layout's tokenizer pads nothing (the runtime pads per batch)
        tokenizer.enable_padding(length=model.cfg.context_length, pad_id=model.cfg.pad_id, pad_token=PAD)
        tokenizer.enable_truncation(max_length=model.cfg.context_length)

    def encode_images(images: Sequence[Image.Image]) -> np.ndarray:
        arr = torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images]).transpose(0, 3, 1, 2))
        with torch.inference_mode():
            return torch.cat([model.encode_image(_to_model_input(arr[i : i + 256]))
                              for i in range(0, len(arr), 256)]).numpy()

    def encode_texts(texts: Sequence[str]) -> np.ndarray:
        ids = torch.tensor(encode_batch(tokenizer, texts))
        with torch.inference_mode():
            return model.encode_text(ids).numpy()

    return encode_images, encode_texts


def quick_eval(model: MiniCLIP, tokenizer_path: Path, heldout: HeldOut, n: int, seed: int) -> dict[str, float]:
    """Retrieval figures on a small gallery drawn with a seed different from training's."""
    gallery = make_gallery(n, seed + 1_000_003, heldout, extra_captions=0)
    encode_images, encode_texts = _torch_encoders(model, tokenizer_path)
    figures = evaluate(gallery, heldout, encode_images, encode_texts)
    keep = ("seen_t2i_r10", "heldout_t2i_r10", "seen_i2t_r10", "heldout_i2t_r10", "heldout_fact_p10",
            "heldout_fact_chance_p10", "seen_fact_p10", "cls_mean", "seen_binding_image", "heldout_binding_image",
            "seen_binding_text", "heldout_binding_text")
    return {k: round(figures[k], 4) for k in keep if k in figures} | {"gallery_scenes": n}


def export_onnx(model: MiniCLIP, tokenizer_path: Path, out_dir: Path) -> Path:
    """Write the immich ONNX layout of `model` into `out_dir` (loads with `onnx:DIR` and `mini:DIR`)."""
    from pixquery.synth.tokenizer import load_tokenizer

    cfg = model.cfg
    text_tokenizer = TextTokenizer(load_tokenizer(tokenizer_path), cfg.context_length, PAD, clean="lower")
    model_config = {
        "embed_dim": cfg.embed_dim,
        "vision_cfg": {"image_size": cfg.image_size, "layers": len(cfg.cnn_widths), "width": cfg.cnn_widths[-1]},
        "text_cfg": {"context_length": cfg.context_length, "vocab_size": cfg.vocab_size,
                     "width": cfg.text_width, "layers": cfg.text_layers, "heads": cfg.text_heads,
                     "tokenizer_kwargs": {"clean": "lower"}},
        "logit_scale": float(model.logit_scale.detach().exp().clamp(max=100.0)),
        "model": "pixquery-mini",
        "mini_config": cfg.to_dict(),  # rebuilds the torch architecture (benchmarks' random-weights baseline)
    }
    preprocess = PreprocessConfig(size=cfg.image_size, mean=IMAGE_MEAN, std=IMAGE_STD,
                                  interpolation="bicubic", resize_mode="shortest")
    # The text tower masks padding itself and reads out at the last real token, so any length up to the
    # context length gives the same embedding: the graph may run at a query's real length.
    return write_immich_layout(
        out_dir, ImageEncoderForExport(model).eval(), TextEncoderForExport(model).eval(), text_tokenizer,
        preprocess, model_config, context_length=cfg.context_length, dynamic_text_length=True,
    )


def train_mini_command(out_dir: Path, minutes: float = 12, seed: int = 0, heldout_spec: str | None = None) -> dict:
    """What `pixquery train-mini OUT_DIR [--minutes M] [--seed S] [--heldout SPEC]` runs."""
    return train_mini(Path(out_dir), minutes=minutes, seed=seed, heldout=parse_heldout(heldout_spec))
