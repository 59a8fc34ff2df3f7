"""Rebuild the shipped concept list (pixquery/data/vocabulary/concepts.txt) from WordNet: a maintainer's tool.

    python scripts/build_vocabulary.py /usr/share/wordnet /usr/share/dict/american-english OUT.txt

(Debian packages `wordnet-base` and `wamerican`.) Keeps picturable English nouns and drops slurs, insults and
taxonomic names; see pixquery/data/vocabulary/SOURCE.md.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

# WordNet lexicographer files whose nouns name things one can photograph (animals, artifacts, food, places, people,
# events...). Abstract files (cognition, feeling, relation, time...) would fill tags with words such as "idea" that
# no picture shows.
VISUAL_LEXFILES: frozenset[int] = frozenset({5, 6, 8, 11, 13, 15, 17, 18, 19, 20, 25, 27})
# Files that are mostly abstract but hold one visual family each: in noun.attribute (7) the hyponyms of
# "color, colour" (red, navy blue, ...); in noun.act (4) those of "sport, athletics" and of "dancing" (skiing, ballet).
VISUAL_ROOTS: dict[int, tuple[str, ...]] = {7: ("04956594",), 4: ("00523513", "00428270")}
# Taxonomic names ("genus felis") describe classification, not anything visible.
# Glosses that mark a sense as a slur or an insult. A lemma with any such sense is dropped altogether (e.g. "coon"
# also means raccoon), because an automatic tagger must never put an insult on someone's photo.
_OFFENSIVE_GLOSS = re.compile(
    r"\b(slur|offensive|derogatory|disparag|vulgar|obscen|contempt|insult|stupid|disliked|subnormal|promiscu|"
    r"sexual|prostitut|ugly|obese|fat person|racist|ethnic)",
    re.IGNORECASE,
)
# Insults whose glosses carry no marker the pattern above catches.
EXCLUDED_LEMMAS: frozenset[str] = frozenset({"slut", "hussy", "trollop", "strumpet", "fornicatress", "slattern"})
_TAXONOMIC = re.compile(r"^(genus|family|order|class|subclass|suborder|phylum|division|subfamily|superfamily) ")


def display_name(lemma: str) -> str:
    """WordNet writes multi-word lemmas with underscores ("hot_dog"); prompts and tags want spaces."""
    return lemma.replace("_", " ")


# --- building the shipped list from WordNet ---------------------------------------------------------------------

def _read_noun_synsets(wordnet_dir: Path) -> tuple[dict[str, tuple[int, list[str], list[str]]], set[str]]:
    """(offset -> (lexicographer file, words as written, hypernym offsets), lemmas with an offensive sense)."""
    synsets: dict[str, tuple[int, list[str], list[str]]] = {}
    offensive: set[str] = set()
    with open(wordnet_dir / "data.noun", encoding="latin-1") as fh:
        for line in fh:
            if line.startswith(" "):  # the licence header lines start with two spaces
                continue
            head, _, gloss = line.partition("|")
            fields = head.split()
            offset, lexfile, n_words = fields[0], int(fields[1]), int(fields[3], 16)
            words = [fields[4 + 2 * i] for i in range(n_words)]
            pos = 4 + 2 * n_words
            n_pointers = int(fields[pos])
            pointers = [fields[pos + 1 + 4 * i : pos + 5 + 4 * i] for i in range(n_pointers)]
            hypernyms = [p[1] for p in pointers if p[0] in ("@", "@i")]
            synsets[offset] = (lexfile, words, hypernyms)
            if _OFFENSIVE_GLOSS.search(gloss):
                offensive.update(w.lower() for w in words)
    return synsets, offensive


def _descends_from(offset: str, root: str, synsets: dict[str, tuple[int, list[str], list[str]]]) -> bool:
    seen, stack = set(), [offset]
    while stack:
        current = stack.pop()
        if current == root:
            return True
        if current not in seen:
            seen.add(current)
            stack.extend(synsets[current][2])
    return False


def _semcor_counts(wordnet_dir: Path) -> dict[str, int]:
    """lemma -> how many of its senses are tagged in the SemCor corpus (WordNet's index.noun tagsense_cnt)."""
    counts = {}
    with open(wordnet_dir / "index.noun", encoding="latin-1") as fh:
        for line in fh:
            if line.startswith(" "):
                continue
            fields = line.split()
            n_pointer_kinds = int(fields[3])
            counts[fields[0]] = int(fields[5 + n_pointer_kinds])
    return counts


def _gloss_bigrams(wordnet_dir: Path) -> Counter[tuple[str, str]]:
    """How often each word pair occurs in the glosses and examples of all of WordNet (a frequency stand-in)."""
    counts: Counter[tuple[str, str]] = Counter()
    for part in ("noun", "verb", "adj", "adv"):
        with open(wordnet_dir / f"data.{part}", encoding="latin-1") as fh:
            for line in fh:
                if not line.startswith(" "):
                    tokens = re.findall(r"[a-z]+(?:-[a-z]+)*", line.partition("|")[2].lower())
                    counts.update(zip(tokens, tokens[1:], strict=False))
    return counts


def build_from_wordnet(wordnet_dir: str | Path, common_words: str | Path) -> list[str]:
    """Picturable WordNet nouns: lower-case lemmas of visual lexicographer files, colours, sports and dances.

    A lemma is kept when it is a single word that a common-English spelling list (SCOWL size 50, Debian's
    `wamerican`) also lists, or a two-word compound that SemCor attests or WordNet's own glosses use ("hot dog",
    "fire engine") and whose two words are common: these filters stand in for word frequency, which WordNet lacks,
    and drop rare species names and jargon. Proper nouns (any upper-case letter), numbers, taxonomic names and any
    lemma with an offensive sense are left out.
    """
    wordnet_dir = Path(wordnet_dir)
    synsets, offensive = _read_noun_synsets(wordnet_dir)
    excluded = offensive | EXCLUDED_LEMMAS
    semcor = _semcor_counts(wordnet_dir)
    bigrams = _gloss_bigrams(wordnet_dir)
    common = {w.strip() for w in Path(common_words).read_text(encoding="utf-8").splitlines() if w.strip().islower()}
    kept: dict[str, None] = {}
    for offset, (lexfile, words, _) in synsets.items():
        visual = lexfile in VISUAL_LEXFILES or any(
            _descends_from(offset, root, synsets) for root in VISUAL_ROOTS.get(lexfile, ())
        )
        if not visual:
            continue
        for raw in words:
            word = re.sub(r"\(.*\)$", "", raw)  # adjective markers such as "(a)" never occur in nouns, but be safe
            name = display_name(word)
            if word != word.lower() or word in excluded or any(ch.isdigit() for ch in word) or _TAXONOMIC.match(name):
                continue
            parts = name.split()
            if len(parts) == 1:
                keep = word in common
            else:
                attested = semcor.get(word, 0) > 0 or bigrams[(parts[0], parts[1])] > 0
                keep = len(parts) == 2 and attested and all(p in common for p in parts)
            if keep:
                kept[name] = None
    return sorted(kept)


def main(argv: Sequence[str] | None = None) -> int:
    """`python scripts/build_vocabulary.py WORDNET_DIR COMMON_WORDS OUT`: rebuild the shipped concept list."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    words = build_from_wordnet(args[0], args[1])
    header = (
        "# pixquery concept vocabulary: picturable English nouns from WordNet 3.0 (see SOURCE.md).\n"
        "# Rebuild: python scripts/build_vocabulary.py /usr/share/wordnet /usr/share/dict/american-english OUT\n"
    )
    Path(args[2]).write_text(header + "".join(w + "\n" for w in words), encoding="utf-8")
    print(f"{len(words)} concepts written to {args[2]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
