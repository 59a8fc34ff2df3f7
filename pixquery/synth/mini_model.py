"""The `mini` dual encoder: a small CNN image tower and a small transformer text tower in one joint space.

Design (sized to train in minutes on two CPU cores):

* Image tower: a plain conv net (conv + BatchNorm + ReLU, stride-2 downsampling) over the 64 px image plus two
  coordinate channels. CNNs pick up colour and shape in few steps on a CPU, where a ViT needs far more data. Relations
  ("a star above a circle") need *where* things are, so the tower never pools globally: the final 4x4 feature map
  is flattened, so every cell has its own projection weights, and the coordinate channels let early layers tag
  features with their position too.
* Text tower: a pre-norm transformer with learned positional embeddings (order-aware: "a star above a circle" and
  "a circle above a star" differ only in order). Attention is causal, as in CLIP, and the text is read out at its
  last real token (<end>), found from the padding mask inside the graph, so the exported model works with any right
  padding and needs no EOS-id convention from the caller.
* Both towers end in a linear projection to `embed_dim`, and outputs are L2-normalised, as CLIP does.

Attention is written out by hand (no nn.MultiheadAttention fast paths) so the ONNX export is plain MatMul/Softmax.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
IMAGE_STD: tuple[float, float, float] = (0.25, 0.25, 0.25)
"""Pixel normalisation ((x/255 - mean) / std); also written to the exported preprocess_cfg.json."""


@dataclass(frozen=True)
class MiniConfig:
    """Hyper-parameters of a `MiniCLIP`; saved beside the weights so a checkpoint rebuilds itself."""

    vocab_size: int
    context_length: int = 32
    pad_id: int = 0
    image_size: int = 64
    embed_dim: int = 128
    stem_width: int = 48
    cnn_widths: tuple[int, ...] = (64, 128, 128)
    cnn_extra_convs: tuple[int, ...] = (0, 1, 0)
    head_hidden: int = 512
    aux_outputs: int = 0
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy (tuples become lists)."""
        out = asdict(self)
        out["cnn_widths"] = list(self.cnn_widths)
        out["cnn_extra_convs"] = list(self.cnn_extra_convs)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MiniConfig:
        """Inverse of `to_dict`."""
        data = dict(data)
        data["cnn_widths"] = tuple(data["cnn_widths"])
        data["cnn_extra_convs"] = tuple(data["cnn_extra_convs"])
        return cls(**data)


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ImageTower(nn.Module):
    """CNN over RGB + (x, y) coordinate channels; the last feature map is flattened, not pooled."""

    def __init__(self, cfg: MiniConfig) -> None:
        super().__init__()
        size = cfg.image_size
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)
        # Stem: two stride-2 3x3 convs (a "convolutional stem"). At the same cost as a stride-4 patchify conv
        # it sees overlapping neighbourhoods with a non-linearity between, which is what tells a 10 px hexagon
        # from a circle; measured on ShapesWorld it learns shapes about twice as fast per step.
        layers: list[nn.Module] = [
            _conv_block(3 + 2, cfg.stem_width // 2, stride=2),
            _conv_block(cfg.stem_width // 2, cfg.stem_width, stride=2),
        ]
        c_in, side = cfg.stem_width, size // 4
        for i, (width, extra) in enumerate(zip(cfg.cnn_widths, cfg.cnn_extra_convs, strict=True)):
            # The first stage keeps the stem's resolution; each later one halves it.
            stride = 1 if i == 0 else 2
            layers.append(_conv_block(c_in, width, stride=stride))
            layers += [_conv_block(width, width, stride=1) for _ in range(extra)]
            c_in, side = width, side // stride
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.flat_dim = c_in * side * side
        # A hidden layer lets the embedding hold conjunctions across cells ("star in a row above the circle's"),
        # which a linear map of per-cell features could only approximate by adding them up.
        self.proj: nn.Module = (
            nn.Sequential(nn.Linear(self.flat_dim, cfg.head_hidden), nn.ReLU(inplace=True),
                          nn.Linear(cfg.head_hidden, cfg.embed_dim))
            if cfg.head_hidden else nn.Linear(self.flat_dim, cfg.embed_dim)
        )

    def spatial_features(self, images: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) normalised pixels -> (n, flat_dim) flattened last feature map."""
        coords = self.coords.expand(images.shape[0], -1, -1, -1)
        return self.features(torch.cat([images, coords], dim=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) normalised pixels -> (n, embed_dim) unnormalised embeddings."""
        return self.proj(self.spatial_features(images))


class _Block(nn.Module):
    """Pre-norm transformer block with hand-written masked self-attention."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        n, t, w = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).reshape(n, t, 3, h, w // h).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(w // h) + attn_bias
        mixed = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, t, w)
        x = x + self.out(mixed)
        return x + self.mlp(self.ln2(x))


class TextTower(nn.Module):
    """Transformer over word ids; read out at the last non-pad token."""

    def __init__(self, cfg: MiniConfig) -> None:
        super().__init__()
        self.pad_id = cfg.pad_id
        self.token = nn.Embedding(cfg.vocab_size, cfg.text_width)
        # CLIP's initialisation: word and position vectors on comparable scales. With nn.Embedding's default
        # (std 1, 50x the positions') the tower trained into a bag of words: "a star above a circle" and "a
        # circle above a star" embedded at cosine 1.000, and colour-swapped captions too.
        nn.init.normal_(self.token.weight, std=0.02)
        self.position = nn.Parameter(torch.randn(cfg.context_length, cfg.text_width) * 0.01)
        self.blocks = nn.ModuleList([_Block(cfg.text_width, cfg.text_heads) for _ in range(cfg.text_layers)])
        self.ln = nn.LayerNorm(cfg.text_width)
        self.proj = nn.Linear(cfg.text_width, cfg.embed_dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(n, t) int token ids, right-padded with pad_id, t <= context_length -> (n, embed_dim)."""
        ids = ids.long()
        real = ids != self.pad_id
        x = self.token(ids) + self.position[: ids.shape[1]]
        # Additive mask: padded keys and later positions get -1e4 (not -inf, which would NaN an all-padding row).
        # Causal, as CLIP's text tower: each word sees only the words before it, so "star" in "a red star" carries
        # its colour and "circle" in "a star above a circle" its relation. Measured: with bidirectional attention
        # the tower trained into a bag of words (swapped captions at cosine 1.000) even with swapped twins.
        position = torch.arange(ids.shape[1], device=ids.device)
        later = position[None, :] > position[:, None]
        blocked = (~real)[:, None, None, :] | later[None, None, :, :]
        attn_bias = blocked.to(x.dtype) * -1e4
        for block in self.blocks:
            x = block(x, attn_bias)
        last = (real.long().sum(dim=1) - 1).clamp(min=0)
        pooled = self.ln(x[torch.arange(ids.shape[0]), last])
        return self.proj(pooled)


class MiniCLIP(nn.Module):
    """The dual encoder, with CLIP's learned logit scale."""

    def __init__(self, cfg: MiniConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual = ImageTower(cfg)
        self.textual = TextTower(cfg)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        # Training-only attribute head (see train.py): never exported, absent when aux_outputs is 0.
        self.aux = nn.Linear(self.visual.flat_dim, cfg.aux_outputs) if cfg.aux_outputs else None

    def image_embedding_and_aux(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Unit image embeddings and the attribute head's logits (None without an attribute head)."""
        feats = self.visual.spatial_features(images)
        emb = F.normalize(self.visual.proj(feats), dim=-1)
        return emb, (self.aux(feats) if self.aux is not None else None)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length image embeddings."""
        return F.normalize(self.visual(images), dim=-1)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Unit-length text embeddings."""
        return F.normalize(self.textual(ids), dim=-1)


class ImageEncoderForExport(nn.Module):
    """`image` (n, 3, S, S) float32 -> `embedding` (n, d) unit rows, the immich visual/model.onnx contract."""

    def __init__(self, model: MiniCLIP) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(image)


class TextEncoderForExport(nn.Module):
    """`text` (n, context_length) int32 -> `embedding` (n, d) unit rows, the immich textual/model.onnx contract."""

    def __init__(self, model: MiniCLIP) -> None:
        super().__init__()
        self.model = model

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(text)
