"""Build the model `vs_rclip.py` gives both sides: a random-weight open_clip ViT-B-32-256, exported as rclip ships it.

Runs in the benchmark's own build venv (torch, open_clip_torch, onnx, onnxruntime, transformers), never at query or
index time. Writes, under --out:

    rclip/                                      what rclip 4.0.8 reads from its data dir ($RCLIP_DATADIR)
        ViT-B-32-256-datacomp_s34b_b86k/visual.onnx    input `input` float32 [batch, 3, 256, 256] -> `output`
        ViT-B-32-256-datacomp_s34b_b86k/textual.onnx   input `input` int64 [batch, 77] -> `output`
        tokenizer/bpe_simple_vocab_16e6.txt.gz         open_clip's BPE merges (rclip's vendored tokenizer reads it)
        LICENSE, OPENAI-CLIP-MIT.txt, README.md, THIRD_PARTY_NOTICES.md
                                                       stand-ins: rclip only checks that they exist before it
                                                       decides the model is downloaded
    pixquery/                                   the immich layout `pixquery --model onnx:DIR` reads
        config.json                                    open_clip's ViT-B-32-256 config
        visual/model.onnx, textual/model.onnx          the same two graphs, inputs renamed `image` and `text`
        visual/preprocess_cfg.json                     open_clip's preprocess config of the architecture
        textual/tokenizer.json, tokenizer_config.json  the same BPE as a Hugging Face fast tokenizer
    build.json                                  what was built and the checks' figures

The export follows rclip's scripts/convert_model.py: the visual module and `encode_text` (no L2 normalisation in
the graph), TorchScript exporter, opset 18, input and output named `input` / `output`, dynamic batch axis only.

The PyPI torchvision wheel for torch 2.13 is built against CUDA and cannot load its C ops on a CPU-only torch;
open_clip imports torchvision only for its transforms, so the op registrations are skipped (nothing here runs
them).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ARCH = "ViT-B-32-256"
RCLIP_MODEL_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"
RCLIP_TOKENIZER = "tokenizer/bpe_simple_vocab_16e6.txt.gz"
RCLIP_LEGAL_FILES = ("LICENSE", "OPENAI-CLIP-MIT.txt", "README.md", "THIRD_PARTY_NOTICES.md")
OPSET = 18
IMAGE_SIZE = 256
CONTEXT_LENGTH = 77
PROBE_TEXTS = ("a dog", "A photo of a CAT on the sofa!", "two   children playing football, 2024")
LEGAL_STANDIN = (
    "Stand-in written by pixquery's benchmarks/vs_rclip_build.py: the ONNX files beside it hold RANDOM weights\n"
    "(open_clip {arch} architecture, seed {seed}), not rclip's published model. rclip only checks that this file\n"
    "exists before deciding its model is downloaded.\n"
)


def import_open_clip() -> Any:
    """open_clip, with torchvision's C-op registrations skipped (see the module docstring)."""
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import open_clip

    return open_clip


def build_model(open_clip: Any, seed: int) -> Any:
    """open_clip's ViT-B-32-256 with seeded random weights, in eval mode."""
    import torch

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = open_clip.create_model(ARCH, pretrained=None)
    return model.eval()


def export_graph(module: Any, example: Any, path: Path) -> None:
    """One tower to ONNX exactly as rclip exports it (names, axes, opset, exporter)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    # nn.MultiheadAttention's fused inference path has no ONNX export; the math is the same without it.
    torch.backends.mha.set_fastpath_enabled(False)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def export_towers(model: Any, model_dir: Path) -> None:
    """visual.onnx and textual.onnx in rclip's model directory."""
    import torch

    class Visual(torch.nn.Module):
        def __init__(self, clip: Any) -> None:
            super().__init__()
            self.visual = clip.visual

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.visual(x)

    class Textual(torch.nn.Module):
        def __init__(self, clip: Any) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.clip.encode_text(x)

    export_graph(Visual(model).eval(), torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE), model_dir / "visual.onnx")
    export_graph(Textual(model).eval(), torch.zeros(1, CONTEXT_LENGTH, dtype=torch.long), model_dir / "textual.onnx")


def rename_input(source: Path, target: Path, new_name: str) -> None:
    """Copy an ONNX graph with its single input renamed (names only: nodes and weights are untouched)."""
    import onnx

    graph_model = onnx.load(str(source))
    graph = graph_model.graph
    old_name = graph.input[0].name
    graph.input[0].name = new_name
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old_name:
                node.input[i] = new_name
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph_model, str(target))


def bpe_vocab(open_clip: Any) -> tuple[dict[str, int], list[tuple[str, str]], Path]:
    """open_clip's CLIP BPE as a vocabulary and merge list, built the way its SimpleTokenizer builds them."""
    from open_clip.tokenizer import bytes_to_unicode

    bpe_path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe_path) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, merges, bpe_path  # type: ignore[return-value]


def write_hf_tokenizer(open_clip: Any, directory: Path) -> list[dict[str, Any]]:
    """tokenizer.json + tokenizer_config.json from the same BPE; returns the ids of probe texts on both sides."""
    from transformers import CLIPTokenizer

    vocab, merges, _ = bpe_vocab(open_clip)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, pad_token="<|endoftext|>")
    tokenizer.save_pretrained(str(directory))
    reference = open_clip.get_tokenizer(ARCH)
    probes = []
    for text in PROBE_TEXTS:
        ids = tokenizer(text)["input_ids"]
        ref = reference([text])[0].tolist()
        probes.append({"text": text, "hf": ids, "open_clip": ref[: len(ids)], "equal": ref[: len(ids)] == ids})
    return probes


def write_rclip_layout(open_clip: Any, root: Path, seed: int) -> None:
    """The tokenizer vocabulary and the stand-in legal files rclip looks for beside its model."""
    _, _, bpe_path = bpe_vocab(open_clip)
    target = root / RCLIP_TOKENIZER
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(bpe_path, target)
    for name in RCLIP_LEGAL_FILES:
        (root / name).write_text(LEGAL_STANDIN.format(arch=ARCH, seed=seed), encoding="utf-8")


def write_pixquery_layout(open_clip: Any, model: Any, rclip_model_dir: Path, root: Path) -> list[dict[str, Any]]:
    """The immich layout over the same two graphs; returns the tokenizer probe comparison."""
    rename_input(rclip_model_dir / "visual.onnx", root / "visual" / "model.onnx", "image")
    rename_input(rclip_model_dir / "textual.onnx", root / "textual" / "model.onnx", "text")
    config = open_clip.get_model_config(ARCH)
    (root / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    preprocess = dict(model.visual.preprocess_cfg)
    preprocess["size"] = list(preprocess["size"]) if isinstance(preprocess["size"], tuple) else preprocess["size"]
    (root / "visual" / "preprocess_cfg.json").write_text(json.dumps(preprocess, indent=2) + "\n", encoding="utf-8")
    return write_hf_tokenizer(open_clip, root / "textual")


def run_graph(path: Path, name: str, value: np.ndarray) -> np.ndarray:
    """One ONNX graph's first output on one input (onnxruntime, CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {name: value})[0])


def check_graphs(model: Any, rclip_model_dir: Path, pixquery_dir: Path) -> dict[str, float]:
    """Max |torch - ONNX| per tower (as rclip's converter checks), and max |rclip graph - renamed graph|."""
    import torch

    rng = np.random.default_rng(0)
    image = rng.standard_normal((2, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    text = np.zeros((2, CONTEXT_LENGTH), dtype=np.int64)
    text[0, :3] = (49406, 320, 49407)
    text[1, :3] = (49406, 539, 49407)
    with torch.no_grad():
        torch_image = model.visual(torch.from_numpy(image)).numpy()
        torch_text = model.encode_text(torch.from_numpy(text)).numpy()
    rclip_image = run_graph(rclip_model_dir / "visual.onnx", "input", image)
    rclip_text = run_graph(rclip_model_dir / "textual.onnx", "input", text)
    pixquery_image = run_graph(pixquery_dir / "visual" / "model.onnx", "image", image)
    pixquery_text = run_graph(pixquery_dir / "textual" / "model.onnx", "text", text)
    return {
        "torch_vs_onnx_image_max_abs": float(np.abs(torch_image - rclip_image).max()),
        "torch_vs_onnx_text_max_abs": float(np.abs(torch_text - rclip_text).max()),
        "rclip_vs_pixquery_graph_image_max_abs": float(np.abs(rclip_image - pixquery_image).max()),
        "rclip_vs_pixquery_graph_text_max_abs": float(np.abs(rclip_text - pixquery_text).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, required=True, help="Directory to write (replaced if it exists).")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the random weights.")
    args = parser.parse_args()

    start = time.perf_counter()
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    rclip_root, pixquery_root = out / "rclip", out / "pixquery"
    rclip_model_dir = rclip_root / RCLIP_MODEL_SUBDIR

    open_clip = import_open_clip()
    model = build_model(open_clip, args.seed)
    export_towers(model, rclip_model_dir)
    write_rclip_layout(open_clip, rclip_root, args.seed)
    probes = write_pixquery_layout(open_clip, model, rclip_model_dir, pixquery_root)
    checks = check_graphs(model, rclip_model_dir, pixquery_root)
    if not all(p["equal"] for p in probes):
        raise SystemExit(f"the Hugging Face tokenizer disagrees with open_clip's: {probes}")
    if max(checks.values()) > 1e-3:
        raise SystemExit(f"exported graphs disagree: {checks}")

    import open_clip as oc
    import torch

    report = {
        "arch": ARCH,
        "seed": args.seed,
        "opset": OPSET,
        "torch": torch.__version__,
        "open_clip": oc.__version__,
        "params": int(sum(p.numel() for p in model.parameters())),
        "files": {
            str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()
        },
        "checks": checks,
        "tokenizer_probes": probes,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out / "build.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"checks": checks, "seconds": report["seconds"]}))


if __name__ == "__main__":
    main()
