"""`random:ARCH`: a real CLIP/SigLIP architecture with seeded random weights, built offline from configs.

For tests and speed benchmarks only: the embeddings are meaningless, so the encoder warns and carries
`meaningless = True` for the CLI to show. The model configs are those of the named checkpoints, as data in
pixquery/data/architectures/ (openai/clip-vit-base-patch32, openai/clip-vit-base-patch16,
google/siglip-base-patch16-224, google/siglip2-base-patch16-224, and two tiny test sizes), so shapes, FLOPs and
ONNX graphs are the real ones. They are transformers models, so images are cropped as transformers crops them.

The real vocabularies cannot be downloaded, so the tokenizer is a stand-in built with the `tokenizers` library
a byte-level BPE trained at load time on a short built-in caption vocabulary (deterministic), its ids padded
with unused filler tokens to the model's vocab size, and the family's special tokens at the family's ids
(CLIP: <|startoftext|> and <|endoftext|> are the two highest ids, as in CLIP, so EOS pooling by argmax works;
SigLIP: <pad>=0, </s>=1, <unk>=2 and </s> appended and used as padding). Token ids are valid, token counts are
close to a real BPE's for English captions, but the ids mean nothing.

Spec: random:ARCH or random:ARCH@seed=N (default seed 0). Architectures: see ARCHS.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixquery.models.base import ModelError
from pixquery.models.families import FAMILIES, REFERENCE_CROP_ROUNDING
from pixquery.models.tokenize import TextTokenizer

ARCH_DIR = Path(__file__).resolve().parents[1] / "data" / "architectures"
"""One JSON file per architecture: model_class, family, source, extra, text_config, vision_config (and notes)."""


@dataclass(frozen=True)
class Arch:
    """One random architecture: a transformers model class, its config, and the family it belongs to."""

    model_class: str
    """CLIPModel or SiglipModel."""
    family: str
    text_config: dict[str, Any]
    vision_config: dict[str, Any]
    extra: dict[str, Any]
    """Top-level config values (projection_dim, logit_scale_init_value, ...)."""
    source: str
    """The checkpoint whose config this is (or why there is none, for the test-only sizes)."""

    @classmethod
    def read(cls, path: Path) -> Arch:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{key: data[key] for key in ("model_class", "family", "text_config", "vision_config",
                                                 "extra", "source")})

    @property
    def image_size(self) -> int:
        return int(self.vision_config["image_size"])

    @property
    def context_length(self) -> int:
        return int(self.text_config["max_position_embeddings"])

    @property
    def vocab_size(self) -> int:
        return int(self.text_config["vocab_size"])


def arch_names() -> list[str]:
    """The architectures `random:` knows (the JSON files in pixquery/data/architectures)."""
    return sorted(path.stem for path in ARCH_DIR.glob("*.json"))


ARCHS: dict[str, Arch] = {name: Arch.read(ARCH_DIR / f"{name}.json") for name in arch_names()}

# Words of everyday photo captions: the BPE merges learnt from them make token counts realistic.
_CORPUS_TEXT = """
a an the of in on at with and or to from by for near under over behind next inside outside two three many
photo picture image close up view portrait shot painting drawing sketch blurry bright dark night day sunset
cat cats kitten dog dogs puppy bird birds parrot duck magpie bee bees flower flowers tree trees forest grass
lake river sea ocean beach boat boats ship car cars bus train bicycle street road city building house bridge
person people man woman child children baby family friends crowd face smiling running walking sitting
chair table sofa bed kitchen room window door book books shelf cup coffee cake food fruit apple banana pizza
camera lens phone computer screen keyboard chess board queen knight pawn rocks stone mountain snow sky cloud
red green blue yellow black white brown orange purple pink grey gray old new small big large little tall
sleeping eating playing flying swimming looking into standing lying holding wearing hat dress shirt glasses
"""
CAPTION_WORDS = _CORPUS_TEXT.split()

_SPECIALS = {
    # family -> (special tokens with ids counted from the top (-1 = last id) or the bottom, pad, template)
    "clip": (
        {"<|startoftext|>": -2, "<|endoftext|>": -1},
        "<|endoftext|>",
        "<|startoftext|> $A <|endoftext|>",
    ),
    "siglip": ({"<pad>": 0, "</s>": 1, "<unk>": 2}, "</s>", "$A </s>"),
    "siglip2": ({"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}, "<pad>", "<bos> $A <eos>"),
}


def build_tokenizer(family: str, vocab_size: int, context_length: int) -> TextTokenizer:
    """The stand-in tokenizer described in the module docstring, deterministic for a (family, vocab size)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    specials, pad_token, template = _SPECIALS[family]
    special_ids = {name: (vocab_size + idx if idx < 0 else idx) for name, idx in specials.items()}
    first_free = sum(1 for idx in specials.values() if idx >= 0)  # bottom specials come first
    last_free = vocab_size - sum(1 for idx in specials.values() if idx < 0)  # top specials come last

    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    trainer_tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=min(last_free - first_free, 1000),
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    # Each word also alone with a leading space teaches merges for words as they appear mid-sentence.
    trainer_tok.train_from_iterator(
        [" ".join(CAPTION_WORDS)] * 2 + [f" {w}" for w in CAPTION_WORDS], trainer=trainer
    )
    learned = trainer_tok.get_vocab()
    if first_free + len(learned) > last_free:
        raise ModelError(f"vocab size {vocab_size} is too small for the stand-in tokenizer")
    merges = [
        tuple(pair.split(" ", 1)) if isinstance(pair, str) else tuple(pair) for pair in _merges(trainer_tok)
    ]

    vocab = {token: first_free + old_id for token, old_id in learned.items()}
    vocab.update(special_ids)
    used = set(vocab.values())
    # Unused fillers make the id space exactly the model's vocab size, so the specials sit at their real ids.
    vocab.update({f"<|unused{i}|>": i for i in range(vocab_size) if i not in used})

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.normalizer = trainer_tok.normalizer
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(specials))
    tok.post_processor = processors.TemplateProcessing(
        single=template,
        special_tokens=[(name, special_ids[name]) for name in specials if name in template],
    )
    clean = FAMILIES[family].clean
    return TextTokenizer(tok, context_length=context_length, pad_token=pad_token, clean=clean)


def _merges(tokenizer: Any) -> list[Any]:
    return json.loads(tokenizer.to_str())["model"]["merges"]


def parse_spec(rest: str) -> tuple[str, int]:
    """Split "ARCH[@seed=N]" into (arch, seed)."""
    arch, _, option = rest.partition("@")
    seed = 0
    if option:
        key, _, value = option.partition("=")
        if key.strip() != "seed" or not value.strip().lstrip("-").isdigit():
            raise ModelError(f"random:{rest}: the only option is @seed=N, e.g. random:ViT-B-32@seed=1")
        seed = int(value)
    arch = arch.strip()
    if arch not in ARCHS:
        raise ModelError(f"unknown random architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return arch, seed


def build_model(arch: Arch, seed: int) -> Any:
    """The transformers model of `arch` with weights drawn from torch's generator seeded with `seed`."""
    import torch
    import transformers

    config_class = getattr(transformers, arch.model_class.replace("Model", "Config"))
    verbosity = transformers.logging.get_verbosity()
    # transformers logs about the default sub-config's token ids while it builds ours; they are not used.
    transformers.logging.set_verbosity_error()
    try:
        config = config_class(
            text_config=dict(arch.text_config), vision_config=dict(arch.vision_config), **arch.extra
        )
    finally:
        transformers.logging.set_verbosity(verbosity)
    model_class = getattr(transformers, arch.model_class)
    # fork_rng leaves the caller's global RNG as it was; the seed alone decides the weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    return model.eval()


def load(rest: str, threads: int | None = None, **options: Any) -> Any:
    """`random:ARCH[@seed=N]`: the architecture with seeded random weights (meaningless=True)."""
    from pixquery.models.torch_encoder import TorchEncoder, hf_towers, logit_params

    arch_name, seed = parse_spec(rest)
    arch = ARCHS[arch_name]
    family = FAMILIES[arch.family]
    warnings.warn(
        f"random:{rest} has random weights: its embeddings and search results are meaningless "
        "(use it only for tests and speed measurements)",
        UserWarning,
        stacklevel=2,
    )
    model = build_model(arch, seed)
    tokenizer = build_tokenizer(arch.family, arch.vocab_size, arch.context_length)
    preprocess = family.preprocess_config(arch.image_size, crop_rounding=REFERENCE_CROP_ROUNDING["transformers"])
    image_tower, text_tower = hf_towers(model)
    dim = (
        int(model.config.projection_dim)
        if arch.model_class == "CLIPModel"
        else int(arch.text_config["hidden_size"])
    )
    model_config = {
        "family": family.name,
        "embed_dim": dim,
        "vision_cfg": {
            "image_size": arch.image_size,
            "patch_size": arch.vision_config["patch_size"],
            "width": arch.vision_config["hidden_size"],
            "layers": arch.vision_config["num_hidden_layers"],
        },
        "text_cfg": {
            "context_length": arch.context_length,
            "vocab_size": arch.vocab_size,
            "width": arch.text_config["hidden_size"],
            "layers": arch.text_config["num_hidden_layers"],
            "tokenizer_kwargs": {"clean": family.clean},
        },
        "random_weights": {"arch": arch_name, "seed": seed, "source_config": arch.source},
        **logit_params(model),
    }
    return TorchEncoder(
        name=f"random:{rest}",
        image_tower=image_tower,
        text_tower=text_tower,
        tokenizer=tokenizer,
        preprocess_cfg=preprocess,
        family=family,
        dim=dim,
        model_config=model_config,
        threads=threads,
        meaningless=True,
    )
