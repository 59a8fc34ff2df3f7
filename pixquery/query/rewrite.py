"""Caption-rewrite composition (after CIReVL) as a plugin interface: a captioner and a rewriter, both replaceable.

CIReVL answers "this image, but <edit>" without training: caption the reference image, let a language model
rewrite the caption according to the edit, then search by the rewritten caption. pixquery ships no captioning
or language model; users supply them through two small protocols:

* `Captioner.caption(reference) -> str` describes a reference image (it gets the image's vector, and its pixels
  on demand through `reference.pil()`).
* `Rewriter.rewrite(caption, edit) -> list[str]` returns one or more target descriptions; several are ensembled
  (as LDRE does with diverse rewrites).

Plugins are registered by name (`register_captioner`, `register_rewriter`) and picked with the `captioner` and
`rewriter` parameters of the `rewrite` and `pdv` methods, or handed directly to `SearchContext`. The registry
starts empty; the test world's zero-shot ShapesWorld captioner and rule-based rewriter (`pixquery.synth.rewrite`,
registered by the evaluation harness) make the method testable end to end with the `mini` model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from pixquery.errors import QueryError
from pixquery.models.base import Encoder


@dataclass
class Reference:
    """A reference image as a captioner sees it: its unit vector, and where its pixels are."""

    vector: np.ndarray
    path: str | None = None
    image: Image.Image | None = field(default=None, repr=False)
    opener: Callable[[], Image.Image] | None = field(default=None, repr=False)
    """How to read an indexed image safely (verified to be the file indexed); None: a file the user named."""

    def pil(self) -> Image.Image:
        """The image's pixels (opened on first use, so captioners that only need the vector never decode it)."""
        if self.image is None:
            if self.opener is not None:
                self.image = self.opener()
            elif self.path is None:
                raise QueryError("this reference image has neither pixels nor a path")
            else:
                from pixquery.media.decode import open_image

                self.image = open_image(self.path)
        return self.image


@runtime_checkable
class Captioner(Protocol):
    """Describes a reference image in words."""

    def caption(self, reference: Reference) -> str:
        """A caption of the reference image."""
        ...


@runtime_checkable
class Rewriter(Protocol):
    """Applies an edit instruction to a caption."""

    def rewrite(self, caption: str, edit: str) -> list[str]:
        """Descriptions of the edited image (one or more; several are ensembled)."""
        ...


CaptionerFactory = Callable[[Encoder], Captioner]
RewriterFactory = Callable[[], Rewriter]

# name -> a factory, or "module:function" of one (imported only when used, so a plain query never imports plugins).
_CAPTIONERS: dict[str, CaptionerFactory | str] = {}
_REWRITERS: dict[str, RewriterFactory | str] = {}


def register_captioner(name: str, factory: CaptionerFactory) -> None:
    """Make a captioner available as `params={"captioner": name}`; the factory receives the query's encoder."""
    _CAPTIONERS[name] = factory
    for key in [k for k in _built if k[0] == name]:
        del _built[key]


def register_rewriter(name: str, factory: RewriterFactory) -> None:
    """Make a rewriter available as `params={"rewriter": name}`."""
    _REWRITERS[name] = factory


def _resolve(table: dict, name: str, what: str) -> Callable:
    entry = table.get(name)
    if entry is None:
        raise QueryError(f"unknown {what} {name!r}; registered: {', '.join(sorted(table)) or 'none'}")
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        table[name] = entry
    return entry


_built: dict[tuple[str, int], tuple[Encoder, Captioner]] = {}


def get_captioner(name: str, encoder: Encoder) -> Captioner:
    """The registered captioner `name` for `encoder`, built once and reused (captioners may cache work)."""
    key = (name, id(encoder))
    entry = _built.get(key)
    if entry is None or entry[0] is not encoder:
        if len(_built) > 16:  # a process rarely holds more than a few encoders; never grow without bound
            _built.clear()
        entry = (encoder, _resolve(_CAPTIONERS, name, "captioner")(encoder))
        _built[key] = entry
    return entry[1]


def get_rewriter(name: str) -> Rewriter:
    """Build the registered rewriter `name`."""
    return _resolve(_REWRITERS, name, "rewriter")()


def registered() -> dict[str, list[str]]:
    """Names of the registered captioners and rewriters."""
    return {"captioners": sorted(_CAPTIONERS), "rewriters": sorted(_REWRITERS)}
