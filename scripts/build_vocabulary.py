"""Rebuild the shipped word lists from WordNet: a maintainer's tool.

    python scripts/build_vocabulary.py common /usr/share/wordnet pixquery/data/imagenet_classes.txt common.txt
    python scripts/build_vocabulary.py /usr/share/wordnet /usr/share/dict/american-english concepts.txt

The first builds the curated default (`common.txt`: a few thousand common, concrete words; needs `pip install
wordfreq`), the second the large WordNet list (`concepts.txt`, 17k nouns). Debian packages `wordnet-base` and
`wamerican`. Both drop slurs, insults and taxonomic names; see pixquery/data/vocabulary/SOURCE.md.
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
# Glosses of nicknames ("doggy": "informal terms for dogs"; "tummy": "slang for a paunch"): the curated list keeps the
# plain word ("dog"), which the nickname otherwise crowds out of names and tags.
_INFORMAL_GLOSS = re.compile(r"\s*(informal terms? for|slang for)\b", re.IGNORECASE)
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


# --- the curated list of common, concrete words (the default for names and open tags) ---------------------------

COMMON_ZIPF = 3.3
"""Least word frequency (wordfreq's Zipf scale: 3 = once per million words) of a curated single-word noun."""
COMMON_LEXFILES: frozenset[int] = frozenset({5, 6, 8, 13, 15, 17, 20, 25, 27})
"""animal, artifact, body, food, location, object, plant, shape, substance: of `VISUAL_LEXFILES`, the files whose
common words name things (noun.event, noun.phenomenon and noun.person gave "meet", "static", "agent"; the hand
lists below cover scenes, weather and people instead)."""
SUBSTANCE_EXTRA_ZIPF = 0.7
"""Substances must be commoner ("water", "sand", "gold" stay; "ammonia", "adrenaline" go)."""
PERSON_WORDS: tuple[str, ...] = (
    "man", "woman", "child", "baby", "boy", "girl", "teenager", "family", "couple", "friends", "crowd", "people",
    "bride", "groom", "player", "runner", "swimmer", "skier", "surfer", "cyclist", "dancer", "musician", "singer",
    "chef", "farmer", "soldier", "police officer", "firefighter", "doctor", "nurse", "student", "teacher", "worker",
    "tourist", "audience", "team", "portrait", "selfie", "face", "hands",
)
"""People words a photo shows (noun.person holds thousands that no picture shows: "lawyer", "sinner")."""
SCENE_WORDS: tuple[str, ...] = (
    "beach", "forest", "mountain", "lake", "river", "waterfall", "desert", "field", "meadow", "garden", "park",
    "city", "street", "skyline", "village", "farm", "countryside", "harbour", "island", "coast", "ocean", "sea",
    "snow", "sky", "clouds", "sunset", "sunrise", "night", "fog", "rain", "storm", "rainbow", "stars", "moon",
    "kitchen", "living room", "bedroom", "bathroom", "office", "classroom", "restaurant", "cafe", "bar", "shop",
    "supermarket", "market", "museum", "library", "church", "temple", "castle", "bridge", "tunnel", "road",
    "highway", "parking lot", "train station", "airport", "stadium", "playground", "swimming pool", "concert",
    "wedding", "birthday party", "festival", "parade", "christmas tree", "fireworks", "campfire", "tent",
    "underwater", "cave", "volcano", "glacier", "jungle", "zoo", "aquarium", "construction site", "graffiti",
)
ACTIVITY_WORDS: tuple[str, ...] = (
    "running", "walking", "hiking", "swimming", "surfing", "skiing", "snowboarding", "skateboarding", "cycling",
    "climbing", "dancing", "singing", "cooking", "eating", "drinking", "reading", "writing", "painting",
    "playing", "sleeping", "fishing", "camping", "sailing", "diving", "riding a horse", "playing football",
    "playing tennis", "playing basketball", "playing guitar", "playing piano", "yoga", "boxing", "shopping",
    "driving", "flying", "gardening", "celebrating", "hugging", "smiling", "laughing",
)
STYLE_WORDS: tuple[str, ...] = (
    "black and white photo", "close-up", "macro photo", "aerial view", "landscape", "panorama", "silhouette",
    "long exposure", "blurry photo", "vintage photo", "drawing", "sketch", "painting", "watercolor", "cartoon",
    "illustration", "diagram", "map", "chart", "screenshot", "document", "text", "poster", "logo", "pattern",
    "texture", "abstract art", "sculpture", "collage", "3d render", "pixel art",
)
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)
"""The 80 object classes of COCO (Lin et al., 2014; annotations CC BY 4.0), names as published."""


def _index_senses(wordnet_dir: Path) -> dict[str, str]:
    """lemma -> offset of its first (most frequent) noun sense, from WordNet's index.noun."""
    first = {}
    with open(wordnet_dir / "index.noun", encoding="latin-1") as fh:
        for line in fh:
            if line.startswith(" "):
                continue
            fields = line.split()
            n_synsets, n_pointer_kinds = int(fields[2]), int(fields[3])
            first[fields[0]] = fields[6 + n_pointer_kinds : 6 + n_pointer_kinds + n_synsets][0]
    return first


GENERIC_WORDS: frozenset[str] = frozenset({
    # kinds of anything: what a thing is *for* or *made of*, not what it is ("holder", "device", "stuff")
    "accessory", "additive", "adjunct", "aggregate", "apparatus", "appliance", "article", "commodity", "component",
    "constituent", "container", "covering", "device", "equipment", "essential", "fixture", "fragment", "gadget",
    "hardware", "holder", "implement", "ingredient", "item", "material", "merchandise", "mixture", "object",
    "output", "part", "parts", "piece", "product", "provisions", "remains", "scrap", "segment", "solid", "souvenir",
    "structure", "stuff", "substance", "supply", "thing", "unit", "ware", "waste",
    # places and extents that fit every photo ("area", "side", "top")
    "area", "end", "facility", "locality", "location", "place", "position", "premises", "region", "sector", "setting",
    "side", "site", "spot", "surface", "territory", "top", "whereabouts", "world", "zone",
    # every photo is one
    "footage", "image", "photo", "photograph", "picture", "snapshot",
    # biology above the basic level: a person says "dog" or "bird", not "mammal" ("pet" is a role, not a kind)
    "animal", "creature", "invertebrate", "mammal", "organism", "pet", "vertebrate",
})
"""Superordinate words (above Rosch's basic level): WordNet files them as concrete nouns, but they name a kind of
anything, a role or an extent, so they fit every photo a little and no photo well; an automatic name or tag of this
kind tells the user nothing (measured: "holder" named 604 of 1,000 ImageNet photos). The basic-level words under them
("dog", "bottle", "beach") stay."""


def _semcor_by_part_of_speech(wordnet_dir: Path) -> dict[str, dict[str, int]]:
    """lemma -> {"n", "v", "a", "r": how often SemCor tags it with a sense of that part of speech} (cntlist.rev)."""
    kinds = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}  # 5: adjective satellite
    counts: dict[str, dict[str, int]] = {}
    with open(wordnet_dir / "cntlist.rev", encoding="latin-1") as fh:
        for line in fh:
            key, _, count = line.split()
            lemma, _, sense = key.partition("%")
            by_kind = counts.setdefault(lemma, {})
            by_kind[kinds[sense[0]]] = by_kind.get(kinds[sense[0]], 0) + int(count)
    return counts


def _sense_counts(wordnet_dir: Path, part: str) -> dict[str, int]:
    """lemma -> how many senses WordNet gives it in `part` ("noun", "adj", "adv"; index.PART's synset_cnt)."""
    with open(wordnet_dir / f"index.{part}", encoding="latin-1") as fh:
        return {f[0]: int(f[2]) for f in (line.split() for line in fh if not line.startswith(" "))}


def _modifier_lemmas(wordnet_dir: Path) -> tuple[dict[str, int], set[str]]:
    """(lemma -> its number of adjective and adverb senses, for lemmas WordNet also lists as adjectives or adverbs;
    those marked "(a)": adjectives used only before a noun, such as "hind" in "hind legs")."""
    modifiers: dict[str, int] = {}
    attributive: set[str] = set()
    for part in ("adj", "adv"):
        for lemma, senses in _sense_counts(wordnet_dir, part).items():
            modifiers[lemma] = modifiers.get(lemma, 0) + senses
    with open(wordnet_dir / "data.adj", encoding="latin-1") as fh:
        for line in fh:
            if not line.startswith(" "):
                attributive.update(w[: -len("(a)")] for w in line.partition("|")[0].split() if w.endswith("(a)"))
    return modifiers, attributive


MIN_SEMCOR_EVIDENCE = 3
"""Fewer adjective or adverb taggings than this in SemCor (a 230,000-word corpus) decide nothing: "olive" and
"plum" (adjective 2, noun 0) stay."""


def noun_first(
    lemma: str, semcor: dict[str, dict[str, int]], noun_senses: dict[str, int], modifiers: dict[str, int],
    attributive: set[str],
) -> bool:
    """Whether `lemma` is mainly a noun: WordNet orders senses by frequency only *within* a part of speech, so the
    parts are compared by SemCor's sense-tagged counts ("somewhere": adverb 30, noun 0; "small": adjective 242, noun
    1). A word SemCor never tags either way goes when it is an attributive-only adjective ("hind", as in "hind
    legs") or has at least as many adjective and adverb senses as noun senses ("ornamental", "cosy"; "birch" with
    3 noun senses and 1 adjective sense stays)."""
    if lemma not in modifiers:
        return True
    counts = semcor.get(lemma, {})
    noun, modifier = counts.get("n", 0), max(counts.get("a", 0), counts.get("r", 0))
    if noun == 0 and modifier == 0:
        return lemma not in attributive and noun_senses.get(lemma, 0) > modifiers[lemma]
    return noun >= modifier or modifier < MIN_SEMCOR_EVIDENCE


def build_common(wordnet_dir: str | Path, imagenet_labels: str | Path, min_zipf: float = COMMON_ZIPF) -> list[str]:
    """The curated vocabulary: common, concrete words people recognise, a few thousand.

    * WordNet single-word nouns whose *first* (most frequent) sense is a visible thing (`COMMON_LEXFILES`,
      colours, sports, dances), written in lower case there, that are common in English (wordfreq Zipf >=
      `min_zipf`; this is what drops "dogie" and "chiffonier"), whose first sense is not marked as a slur, an
      insult or a nickname ("doggy"; a word is judged by the sense a tagger would mean), that are mainly nouns
      (`noun_first`: not "somewhere", "hind", "small"; colours excepted) and that are not superordinates
      (`GENERIC_WORDS`: not "holder", "device", "mammal");
    * ImageNet-1k class names of at most two words, each of them common (Zipf >= 3), written in lower case;
    * COCO's 80 object classes and hand-written lists of people, scenes, activities and photo styles.

    Needs the `wordfreq` package (a maintainer's tool; pixquery itself never imports it).
    """
    from wordfreq import zipf_frequency

    wordnet_dir = Path(wordnet_dir)
    synsets, _ = _read_noun_synsets(wordnet_dir)
    first = _index_senses(wordnet_dir)
    semcor = _semcor_by_part_of_speech(wordnet_dir)
    modifiers, attributive = _modifier_lemmas(wordnet_dir)
    noun_senses = _sense_counts(wordnet_dir, "noun")
    offensive_first = set()
    with open(wordnet_dir / "data.noun", encoding="latin-1") as fh:
        for line in fh:
            gloss = line.partition("|")[2]
            if not line.startswith(" ") and (_OFFENSIVE_GLOSS.search(gloss) or _INFORMAL_GLOSS.match(gloss)):
                offensive_first.add(line.split()[0])
    words: dict[str, None] = {}
    for lemma, offset in first.items():
        lexfile, written, _ = synsets[offset]
        visual = lexfile in COMMON_LEXFILES or any(
            _descends_from(offset, root, synsets) for root in VISUAL_ROOTS.get(lexfile, ())
        )
        least = min_zipf + (SUBSTANCE_EXTRA_ZIPF if lexfile == 27 else 0.0)
        # Colours are adjectives first ("red") but a visual family kept on purpose: people search and tag by colour.
        colour = lexfile == 7 and visual
        if (
            visual and lemma.isalpha() and lemma in written and offset not in offensive_first
            and lemma not in EXCLUDED_LEMMAS and lemma not in GENERIC_WORDS
            and (colour or noun_first(lemma, semcor, noun_senses, modifiers, attributive))
            and zipf_frequency(lemma, "en") >= least
        ):
            words[lemma] = None
    for label in Path(imagenet_labels).read_text(encoding="utf-8").splitlines():
        parts = label.strip().lower().split()
        if 0 < len(parts) <= 2 and all(p.isalpha() and zipf_frequency(p, "en") >= 3.0 for p in parts):
            words[" ".join(parts)] = None
    for extra in (COCO_CLASSES, PERSON_WORDS, SCENE_WORDS, ACTIVITY_WORDS, STYLE_WORDS):
        words.update(dict.fromkeys(extra))
    return sorted(words)


def main(argv: Sequence[str] | None = None) -> int:
    """`python scripts/build_vocabulary.py common WORDNET_DIR IMAGENET_LABELS OUT` (the curated default list), or
    `python scripts/build_vocabulary.py WORDNET_DIR COMMON_WORDS OUT` (the large WordNet list)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 4 and args[0] == "common":
        words = build_common(args[1], args[2])
        header = (
            "# pixquery common vocabulary: common, concrete words for cluster names and open tags (see SOURCE.md).\n"
            "# Rebuild: python scripts/build_vocabulary.py common /usr/share/wordnet "
            "pixquery/data/imagenet_classes.txt OUT\n"
        )
        out = args[3]
    elif len(args) == 3:
        words = build_from_wordnet(args[0], args[1])
        header = (
            "# pixquery concept vocabulary: picturable English nouns from WordNet 3.0 (see SOURCE.md).\n"
            "# Rebuild: python scripts/build_vocabulary.py /usr/share/wordnet /usr/share/dict/american-english OUT\n"
        )
        out = args[2]
    else:
        print(__doc__, file=sys.stderr)
        return 2
    Path(out).write_text(header + "".join(w + "\n" for w in words), encoding="utf-8")
    print(f"{len(words)} words written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
