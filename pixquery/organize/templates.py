"""Prompt templates for zero-shot classification: data, not code.

`IMAGENET_TEMPLATES` are the 80 templates OpenAI published with CLIP (the "Prompt_Engineering_for_ImageNet"
notebook of the CLIP repository); averaging a class over all of them added about 3.5 ImageNet points over a single
prompt in the CLIP paper (§3.1.4). `CURATED_TEMPLATES` are the 7 of those 80 that the same notebook found by
sequential forward selection to do as well as all 80. `SINGLE_TEMPLATE` is the usual one-prompt baseline.
Each template has one `{}` where the label goes.
"""

from __future__ import annotations

from pathlib import Path

SINGLE_TEMPLATE = "a photo of a {}."

IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

CURATED_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "single": (SINGLE_TEMPLATE,),
    "curated": CURATED_TEMPLATES,
    "imagenet80": IMAGENET_TEMPLATES,
    "bare": ("{}",),
}
"""Named template sets accepted wherever templates are (`--templates curated`)."""


def resolve_templates(
    templates: str | Path | list[str] | tuple[str, ...] | None, default: str = "curated"
) -> list[str]:
    """Templates from a set name ("single", "curated", "imagenet80", "bare"), a text file (one per line) or a list.

    Raises ValueError when a template lacks the `{}` placeholder, since such a prompt would ignore the label.
    """
    if templates is None:
        templates = default
    if isinstance(templates, str) and templates in TEMPLATE_SETS:
        out = list(TEMPLATE_SETS[templates])
    elif isinstance(templates, (str, Path)):
        path = Path(templates)
        if not path.is_file():
            known = ", ".join(TEMPLATE_SETS)
            raise ValueError(f"templates {str(templates)!r} is neither a set name ({known}) nor a file")
        lines = path.read_text(encoding="utf-8").splitlines()
        out = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    else:
        out = [str(t) for t in templates]
    if not out:
        raise ValueError("no templates given")
    bad = [t for t in out if t.count("{}") != 1]
    if bad:
        raise ValueError(f"each template needs exactly one '{{}}' for the label; these do not: {bad[:3]}")
    return out
