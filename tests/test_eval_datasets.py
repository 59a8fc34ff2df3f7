"""Dataset readers on tiny hand-written fixtures in each official format, and on broken copies of them."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pixquery.errors import PixqueryError
from pixquery.eval.datasets import (
    FASHIONIQ_CATEGORIES,
    DatasetFormatError,
    join_fashioniq_captions,
    read_circo,
    read_cirr,
    read_fashioniq,
    read_fashioniq_all,
    read_imagefolder,
    read_karpathy,
    read_revisited,
)

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


@pytest.fixture
def copy_fixture(tmp_path: Path):
    """Copy one fixture folder into tmp_path so a test can break it."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(FIXTURES / name, target)
        return target

    return copy


def edit_json(path: Path, change) -> None:
    """Load a JSON file, let `change` mutate it, write it back."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def expect_error(match: str, *parts: str):
    """pytest.raises for DatasetFormatError whose message contains every part (file names, fields)."""

    class Checker:
        def __enter__(self):
            self.ctx = pytest.raises(DatasetFormatError, match=match)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            result = self.ctx.__exit__(*exc)
            for part in parts:
                assert part in str(self.info.value), f"{part!r} not in {self.info.value}"
            return result

    return Checker()


def test_format_error_names_path_and_field() -> None:
    error = DatasetFormatError(Path("/data/x.json"), "expected list, got string", field="[3].members")
    assert isinstance(error, PixqueryError)
    assert str(error) == "/data/x.json: field '[3].members': expected list, got string"
    assert error.field == "[3].members"


# ------------------------------------------------------------------------------------------------------
# Karpathy (Flickr30K, COCO, ShapesWorld)
# ------------------------------------------------------------------------------------------------------


def test_flickr30k_test_split() -> None:
    ds = read_karpathy(FIXTURES / "karpathy" / "flickr30k")
    assert [p.name for p in ds.image_paths] == ["1000092795.jpg", "1000268201.jpg"]
    assert all(p.is_file() and p.parent.name == "images" for p in ds.image_paths)
    assert len(ds.captions) == 10
    assert ds.captions[0] == "Two dogs run on grass."
    assert ds.captions[5] == "Children at a beach."
    assert ds.caption_to_image.tolist() == [0] * 5 + [1] * 5
    assert ds.name == "flickr30k" and ds.split == "test"
    assert ds.image_tags == {} and ds.caption_tags == {}


def test_flickr30k_other_split_and_json_path() -> None:
    ds = read_karpathy(FIXTURES / "karpathy" / "flickr30k" / "dataset_flickr30k.json", split="val")
    assert [p.name for p in ds.image_paths] == ["10002456.jpg"]
    assert ds.captions[1] == "A cyclist rides uphill."


def test_coco_keeps_all_captions_by_default() -> None:
    ds = read_karpathy(FIXTURES / "karpathy" / "coco")
    assert [p.relative_to(FIXTURES / "karpathy" / "coco").as_posix() for p in ds.image_paths] == [
        "images/val2014/COCO_val2014_000000391895.jpg",
        "images/val2014/COCO_val2014_000000522418.jpg",
    ]
    # Six captions on the first image are all kept, as CLIP_benchmark's CocoCaptions does.
    assert np.bincount(ds.caption_to_image).tolist() == [6, 5]
    # Raw text is passed on unmodified, trailing space included.
    assert ds.captions[0] == "A man with a red helmet on a small moped on a dirt road. "
    assert ds.image_tags["cocoid"].tolist() == [391895, 522418]


def test_coco_max_captions_per_image() -> None:
    ds = read_karpathy(FIXTURES / "karpathy" / "coco", max_captions_per_image=5)
    assert np.bincount(ds.caption_to_image).tolist() == [5, 5]
    assert "A sixth caption some COCO images have." not in ds.captions
    with pytest.raises(ValueError):
        read_karpathy(FIXTURES / "karpathy" / "coco", max_captions_per_image=0)


def test_coco_several_splits() -> None:
    ds = read_karpathy(FIXTURES / "karpathy" / "coco", split=("train", "restval"))
    assert [p.parent.name for p in ds.image_paths] == ["train2014"]
    assert ds.split == "restval+train"


def test_coco_without_filepath_folder(copy_fixture) -> None:
    root = copy_fixture("karpathy/coco")
    flat = root / "flat"
    flat.mkdir()
    for image in (root / "images" / "val2014").iterdir():
        image.rename(flat / image.name)
    ds = read_karpathy(root, images_dir=flat)
    assert [p.parent for p in ds.image_paths] == [flat, flat]


def test_shapesworld_heldout_tags() -> None:
    ds = read_karpathy(FIXTURES / "karpathy" / "shapesworld")
    assert ds.name == "shapesworld"
    assert ds.image_tags["heldout"].dtype == bool
    assert ds.image_tags["heldout"].tolist() == [False, True, False]
    assert ds.tag_per_caption("heldout").tolist() == [False, False, True, True, False, False]
    with pytest.raises(KeyError):
        ds.tag_per_caption("nope")


def test_shapesworld_caption_level_tag(copy_fixture) -> None:
    root = copy_fixture("karpathy/shapesworld")

    def add(data: dict[str, Any]) -> None:
        for image in data["images"]:
            for j, sentence in enumerate(image["sentences"]):
                sentence["template"] = f"t{j}"

    edit_json(root / "dataset_shapesworld.json", add)
    ds = read_karpathy(root)
    assert ds.caption_tags["template"].tolist() == ["t0", "t1"] * 3
    assert ds.tag_per_caption("template").tolist() == ["t0", "t1"] * 3


def test_karpathy_tag_missing_on_one_image(copy_fixture) -> None:
    root = copy_fixture("karpathy/shapesworld")
    edit_json(root / "dataset_shapesworld.json", lambda d: d["images"][2].pop("heldout"))
    with expect_error("missing here", "dataset_shapesworld.json", "images[2].heldout"):
        read_karpathy(root)


def test_karpathy_tag_of_mixed_kinds(copy_fixture) -> None:
    root = copy_fixture("karpathy/shapesworld")
    edit_json(root / "dataset_shapesworld.json", lambda d: d["images"][1].update(heldout="yes"))
    with expect_error("expected boolean", "images[1].heldout"):
        read_karpathy(root)


def test_karpathy_missing_annotation(tmp_path: Path) -> None:
    with expect_error("no Karpathy annotation file", str(tmp_path), "dataset_flickr30k.json"):
        read_karpathy(tmp_path)
    with expect_error("annotation file not found", "dataset_coco.json"):
        read_karpathy(tmp_path, name="coco")


def test_karpathy_several_files_need_a_name(copy_fixture) -> None:
    root = copy_fixture("karpathy/flickr30k")
    shutil.copy(FIXTURES / "karpathy" / "coco" / "dataset_coco.json", root)
    with pytest.raises(ValueError, match="name="):
        read_karpathy(root)
    assert read_karpathy(root, name="flickr30k").name == "flickr30k"


def test_karpathy_invalid_json(copy_fixture) -> None:
    root = copy_fixture("karpathy/flickr30k")
    (root / "dataset_flickr30k.json").write_text('{"images": [')
    with expect_error("not valid JSON", "dataset_flickr30k.json"):
        read_karpathy(root)


def test_karpathy_missing_raw_caption(copy_fixture) -> None:
    root = copy_fixture("karpathy/flickr30k")
    edit_json(root / "dataset_flickr30k.json", lambda d: d["images"][0]["sentences"][1].pop("raw"))
    with expect_error("missing", "dataset_flickr30k.json", "images[0].sentences[1].raw"):
        read_karpathy(root)


def test_karpathy_wrong_types(copy_fixture) -> None:
    root = copy_fixture("karpathy/flickr30k")
    edit_json(
        root / "dataset_flickr30k.json", lambda d: d["images"][2].update(sentences="Children at a beach.")
    )
    with expect_error("expected list, got string", "images[2].sentences"):
        read_karpathy(root)
    edit_json(root / "dataset_flickr30k.json", lambda d: d.update(images={"a": 1}))
    with expect_error("expected list, got object", "field 'images'"):
        read_karpathy(root)


def test_karpathy_missing_filename(copy_fixture) -> None:
    root = copy_fixture("karpathy/flickr30k")
    edit_json(root / "dataset_flickr30k.json", lambda d: d["images"][0].pop("filename"))
    with expect_error("missing", "images[0].filename"):
        read_karpathy(root)


def test_karpathy_unknown_split() -> None:
    with expect_error("no image has split", "dataset_flickr30k.json", "'test'", "'train'", "'val'"):
        read_karpathy(FIXTURES / "karpathy" / "flickr30k", split="karpathy-test")


def test_karpathy_missing_image(copy_fixture) -> None:
    root = copy_fixture("karpathy/flickr30k")
    (root / "images" / "1000268201.jpg").unlink()
    with expect_error("not found", "1000268201.jpg"):
        read_karpathy(root)
    # Without the check the path is still returned, for callers that verify later.
    ds = read_karpathy(root, check_images=False)
    assert ds.image_paths[1] == root / "images" / "1000268201.jpg"


def test_karpathy_images_nowhere(copy_fixture) -> None:
    root = copy_fixture("karpathy/flickr30k")
    shutil.rmtree(root / "images")
    with expect_error("image '1000092795.jpg' not found; tried", "images_dir"):
        read_karpathy(root)


# ------------------------------------------------------------------------------------------------------
# CIRR
# ------------------------------------------------------------------------------------------------------


def test_cirr_val() -> None:
    ds = read_cirr(FIXTURES / "cirr")
    assert ds.name == "cirr" and ds.split == "val"
    assert ds.gallery_names == [
        "dev-0-0-img0",
        "dev-0-0-img1",
        "dev-1-0-img0",
        "dev-1-1-img1",
        "dev-2-0-img0",
        "dev-2-1-img0",
    ]
    assert ds.gallery_paths[0] == FIXTURES / "cirr" / "cirr" / "img_raw" / "dev" / "dev-0-0-img0.png"
    assert len(ds.queries) == 3
    first = ds.queries[0]
    assert first.reference == "dev-0-0-img0"
    assert first.caption == "Show three bottles of soft drink"
    assert first.targets == ["dev-1-0-img0"]
    assert first.subset == ["dev-0-0-img0", "dev-0-0-img1", "dev-1-0-img0", "dev-2-1-img0"]
    assert first.extra["pairid"] == 0 and first.extra["img_set_id"] == 0
    assert ds.queries[1].extra["target_soft"] == {"dev-2-0-img0": 1.0, "dev-0-0-img1": 0.5}
    assert ds.name_to_index()["dev-2-0-img0"] == 4


def test_cirr_accepts_the_cirr_folder_itself() -> None:
    ds = read_cirr(FIXTURES / "cirr" / "cirr")
    assert len(ds.queries) == 3


def test_cirr_test_split_has_no_targets() -> None:
    ds = read_cirr(FIXTURES / "cirr", split="test")
    assert ds.split == "test1"
    assert ds.gallery_names == ["test1-0-0-img0", "test1-0-1-img1", "test1-1-0-img1"]
    assert [q.targets for q in ds.queries] == [[]]
    assert ds.queries[0].extra["pairid"] == 7
    assert ds.queries[0].subset == ["test1-0-0-img0", "test1-0-1-img1", "test1-1-0-img1"]


def test_cirr_searle_layout(copy_fixture) -> None:
    # SEARLE keeps dev/ and test1/ next to the cirr/ folder instead of inside cirr/img_raw/.
    root = copy_fixture("cirr")
    shutil.move(root / "cirr" / "img_raw" / "dev", root / "dev")
    ds = read_cirr(root)
    assert ds.gallery_paths[0] == root / "dev" / "dev-0-0-img0.png"


def test_cirr_missing_caption_file(copy_fixture) -> None:
    root = copy_fixture("cirr")
    (root / "cirr" / "captions" / "cap.rc2.val.json").unlink()
    with expect_error("caption file not found", "cap.rc2.val.json"):
        read_cirr(root)


def test_cirr_missing_split_file(tmp_path: Path) -> None:
    with expect_error("image split file not found", "split.rc2.val.json"):
        read_cirr(tmp_path)


def test_cirr_missing_caption_field(copy_fixture) -> None:
    root = copy_fixture("cirr")
    edit_json(root / "cirr" / "captions" / "cap.rc2.val.json", lambda d: d[1].pop("caption"))
    with expect_error("missing", "cap.rc2.val.json", "[1].caption"):
        read_cirr(root)


def test_cirr_members_wrong_type(copy_fixture) -> None:
    root = copy_fixture("cirr")
    edit_json(root / "cirr" / "captions" / "cap.rc2.val.json", lambda d: d[0]["img_set"].update(members="x"))
    with expect_error("expected list, got string", "[0].img_set.members"):
        read_cirr(root)
    edit_json(
        root / "cirr" / "captions" / "cap.rc2.val.json", lambda d: d[0]["img_set"].update(members=["a", 3])
    )
    with expect_error("expected string, got number", "[0].img_set.members[1]"):
        read_cirr(root)


def test_cirr_pairid_must_be_integer(copy_fixture) -> None:
    root = copy_fixture("cirr")
    edit_json(root / "cirr" / "captions" / "cap.rc2.val.json", lambda d: d[2].update(pairid="2"))
    with expect_error("expected integer, got string", "[2].pairid"):
        read_cirr(root)


def test_cirr_target_outside_split(copy_fixture) -> None:
    root = copy_fixture("cirr")
    edit_json(
        root / "cirr" / "captions" / "cap.rc2.val.json", lambda d: d[2].update(target_hard="dev-9-9-img0")
    )
    with expect_error("not in the split's image list", "[2].target_hard", "dev-9-9-img0"):
        read_cirr(root)


def test_cirr_split_file_wrong_type(copy_fixture) -> None:
    root = copy_fixture("cirr")
    (root / "cirr" / "image_splits" / "split.rc2.val.json").write_text('["dev-0-0-img0"]')
    with expect_error("expected object, got list", "split.rc2.val.json"):
        read_cirr(root)


def test_cirr_missing_image(copy_fixture) -> None:
    root = copy_fixture("cirr")
    (root / "cirr" / "img_raw" / "dev" / "dev-2-1-img0.png").unlink()
    with expect_error("not found", "dev-2-1-img0.png", "split.rc2.val.json"):
        read_cirr(root)


# ------------------------------------------------------------------------------------------------------
# CIRCO
# ------------------------------------------------------------------------------------------------------


def test_circo_val_gallery_from_folder() -> None:
    ds = read_circo(FIXTURES / "circo")
    assert ds.gallery_names == ["124", "9761", "57541", "85932", "489535"]
    assert ds.gallery_paths[1].name == "000000009761.jpg"
    first = ds.queries[0]
    assert first.reference == "85932"
    assert first.caption == "is held by a little girl on a chair"
    assert first.targets == ["9761", "489535"]
    assert first.subset is None
    assert first.extra == {
        "id": 0,
        "shared_concept": "a teddy bear",
        "target_img_id": "9761",
        "semantic_aspects": ["spatial_relations_background", "direct_addressing"],
    }
    assert ds.queries[1].targets == ["57541"]


def test_circo_gallery_order_from_image_info(copy_fixture) -> None:
    root = copy_fixture("circo")
    info = {
        "images": [
            {"id": image_id, "file_name": f"{image_id:012d}.jpg"}
            for image_id in (489535, 9761, 124, 85932, 57541)
        ]
    }
    (root / "COCO2017_unlabeled" / "annotations").mkdir()
    (root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json").write_text(
        json.dumps(info)
    )
    ds = read_circo(root)
    assert ds.gallery_names == ["489535", "9761", "124", "85932", "57541"]


def test_circo_test_split() -> None:
    ds = read_circo(FIXTURES / "circo", split="test")
    assert [(q.reference, q.targets) for q in ds.queries] == [("489535", [])]
    assert "target_img_id" not in ds.queries[0].extra


def test_circo_gt_wrong_type(copy_fixture) -> None:
    root = copy_fixture("circo")
    edit_json(root / "annotations" / "val.json", lambda d: d[0].update(gt_img_ids=[9761, "489535"]))
    with expect_error("expected integer, got string", "val.json", "[0].gt_img_ids[1]"):
        read_circo(root)


def test_circo_missing_fields(copy_fixture) -> None:
    root = copy_fixture("circo")
    edit_json(root / "annotations" / "val.json", lambda d: d[1].pop("relative_caption"))
    with expect_error("missing", "[1].relative_caption"):
        read_circo(root)
    edit_json(root / "annotations" / "val.json", lambda d: d[1].pop("gt_img_ids"))
    with expect_error("missing", "[1].gt_img_ids"):
        read_circo(root)


def test_circo_ground_truth_outside_gallery(copy_fixture) -> None:
    root = copy_fixture("circo")
    (root / "COCO2017_unlabeled" / "unlabeled2017" / "000000489535.jpg").unlink()
    with expect_error("not in the gallery", "val.json", "[0].gt_img_ids[1]"):
        read_circo(root)


def test_circo_missing_annotation_and_images(tmp_path: Path, copy_fixture) -> None:
    with expect_error("annotation file not found", "val.json"):
        read_circo(tmp_path)
    root = copy_fixture("circo")
    shutil.rmtree(root / "COCO2017_unlabeled")
    with expect_error("image folder not found", "unlabeled2017"):
        read_circo(root)


# ------------------------------------------------------------------------------------------------------
# FashionIQ
# ------------------------------------------------------------------------------------------------------


def test_join_fashioniq_captions() -> None:
    assert join_fashioniq_captions("is red.", " has long sleeves?") == "is red and has long sleeves"
    assert (
        join_fashioniq_captions("  is longer and blue?", "has a belt, ")
        == "is longer and blue and has a belt"
    )


def test_fashioniq_dress_val() -> None:
    ds = read_fashioniq(FIXTURES / "fashioniq", "dress")
    assert ds.name == "fashioniq-dress"
    assert ds.gallery_names == ["B00A0I8FXC", "B008BHCT58", "B007UZSEFQ"]
    assert ds.gallery_paths[0] == FIXTURES / "fashioniq" / "images" / "B00A0I8FXC.png"
    first, second = ds.queries
    assert (first.reference, first.targets) == ("B00A0I8FXC", ["B008BHCT58"])
    assert first.caption == "is solid black with no sleeves and is black with straps"
    assert first.extra["caption_reversed"] == "is black with straps and is solid black with no sleeves"
    assert first.extra["captions"] == ["is solid black with no sleeves", "is black with straps."]
    assert second.caption == "is longer and blue and has a belt"


def test_fashioniq_all_categories() -> None:
    sets = read_fashioniq_all(FIXTURES / "fashioniq")
    assert tuple(sets) == FASHIONIQ_CATEGORIES
    assert sets["toptee"].queries[0].caption == "is white and is more casual"
    assert sets["shirt"].gallery_names == ["B00006M009", "B00BPD4N5E"]


def test_fashioniq_test_split() -> None:
    ds = read_fashioniq(FIXTURES / "fashioniq", "dress", split="test")
    assert [(q.reference, q.targets, q.caption) for q in ds.queries] == [
        ("B00A0I8FXC", [], "is red and is shorter")
    ]


def test_fashioniq_jpg_images(copy_fixture, tmp_path: Path) -> None:
    root = copy_fixture("fashioniq")
    jpgs = tmp_path / "jpgs"
    jpgs.mkdir()
    for png in (root / "images").glob("*.png"):
        Image.open(png).convert("RGB").save(jpgs / f"{png.stem}.jpg")
    ds = read_fashioniq(root, "shirt", images_dir=jpgs)
    assert [p.suffix for p in ds.gallery_paths] == [".jpg", ".jpg"]


def test_fashioniq_unknown_category() -> None:
    with pytest.raises(ValueError, match="dress"):
        read_fashioniq(FIXTURES / "fashioniq", "shoes")


def test_fashioniq_wrong_caption_count(copy_fixture) -> None:
    root = copy_fixture("fashioniq")
    edit_json(root / "captions" / "cap.dress.val.json", lambda d: d[1].update(captions=["only one"]))
    with expect_error("expected 2 captions, got 1", "cap.dress.val.json", "[1].captions"):
        read_fashioniq(root, "dress")


def test_fashioniq_val_needs_target(copy_fixture) -> None:
    root = copy_fixture("fashioniq")
    edit_json(root / "captions" / "cap.dress.val.json", lambda d: d[0].pop("target"))
    with expect_error("missing", "cap.dress.val.json", "[0].target"):
        read_fashioniq(root, "dress")


def test_fashioniq_target_outside_split(copy_fixture) -> None:
    root = copy_fixture("fashioniq")
    edit_json(root / "captions" / "cap.shirt.val.json", lambda d: d[0].update(target="B000000000"))
    with expect_error("not in the category's image split", "[0].target"):
        read_fashioniq(root, "shirt")


def test_fashioniq_missing_files(copy_fixture) -> None:
    root = copy_fixture("fashioniq")
    (root / "images" / "B00BPD4N5E.png").unlink()
    with expect_error("not found", "B00BPD4N5E.png", "split.shirt.val.json"):
        read_fashioniq(root, "shirt")
    (root / "image_splits" / "split.toptee.val.json").unlink()
    with expect_error("image split file not found", "split.toptee.val.json"):
        read_fashioniq(root, "toptee")


def test_fashioniq_split_entries_must_be_strings(copy_fixture) -> None:
    root = copy_fixture("fashioniq")
    (root / "image_splits" / "split.dress.val.json").write_text('["B00A0I8FXC", 5]')
    with expect_error("expected string, got number", "split.dress.val.json", "[1]"):
        read_fashioniq(root, "dress")


# ------------------------------------------------------------------------------------------------------
# Class folders
# ------------------------------------------------------------------------------------------------------


def test_imagefolder_with_classnames_txt() -> None:
    ds = read_imagefolder(FIXTURES / "imagefolder")
    assert ds.classnames == ["tench", "goldfish", "great white shark"]
    assert ds.folder_names == ["n01440764", "n01443537", "n01484850"]
    assert ds.labels.tolist() == [0, 0, 1, 2, 2]
    assert [p.parent.name for p in ds.image_paths] == [
        "n01440764",
        "n01440764",
        "n01443537",
        "n01484850",
        "n01484850",
    ]
    assert ds.image_paths[-1].suffix == ".png"


def test_imagefolder_classnames_json_list_and_object(copy_fixture, tmp_path: Path) -> None:
    root = copy_fixture("imagefolder")
    (root / "classnames.txt").unlink()
    (root / "classnames.json").write_text(json.dumps(["tench", "goldfish", "shark"]))
    assert read_imagefolder(root).classnames == ["tench", "goldfish", "shark"]
    mapping = tmp_path / "names.json"
    mapping.write_text(json.dumps({"n01484850": "shark", "n01440764": "tench", "n01443537": "goldfish"}))
    assert read_imagefolder(root, classnames=mapping).classnames == ["tench", "goldfish", "shark"]
    assert read_imagefolder(root, classnames=["a", "b", "c"]).classnames == ["a", "b", "c"]


def test_imagefolder_without_classnames_uses_folders(copy_fixture) -> None:
    root = copy_fixture("imagefolder")
    (root / "classnames.txt").unlink()
    assert read_imagefolder(root).classnames == ["n01440764", "n01443537", "n01484850"]


def test_imagefolder_classname_count_mismatch(copy_fixture) -> None:
    root = copy_fixture("imagefolder")
    (root / "classnames.txt").write_text("tench\ngoldfish\n")
    with expect_error("lists 2 class names", "classnames.txt", "3 class folders"):
        read_imagefolder(root)
    with pytest.raises(ValueError, match="2 class names"):
        read_imagefolder(root, classnames=["a", "b"])


def test_imagefolder_blank_line(copy_fixture) -> None:
    root = copy_fixture("imagefolder")
    (root / "classnames.txt").write_text("tench\n\ngreat white shark\n")
    with expect_error("empty class name", "classnames.txt", "line 2"):
        read_imagefolder(root)


def test_imagefolder_json_object_missing_folder(copy_fixture) -> None:
    root = copy_fixture("imagefolder")
    (root / "classnames.txt").unlink()
    (root / "classnames.json").write_text(json.dumps({"n01440764": "tench", "n01443537": "goldfish"}))
    with expect_error("missing", "classnames.json", "n01484850"):
        read_imagefolder(root)


def test_imagefolder_empty_class_and_missing_root(copy_fixture, tmp_path: Path) -> None:
    root = copy_fixture("imagefolder")
    (root / "n99999999").mkdir()
    (root / "n99999999" / "notes.txt").write_text("not an image")
    with expect_error("holds no images", "n99999999"):
        read_imagefolder(root, classnames=["a", "b", "c", "d"])
    with expect_error("image folder not found", "nowhere"):
        read_imagefolder(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------------
# Revisited Oxford / Paris
# ------------------------------------------------------------------------------------------------------

GALLERY = ["all_souls_000000", "all_souls_000001", "ashmolean_000000", "balliol_000000", "radcliffe_000000"]
QUERIES = ["all_souls_000013", "radcliffe_000390"]


def revisited_gnd() -> dict[str, Any]:
    """A two-query ground truth in the layout of gnd_roxford5k.pkl."""
    return {
        "imlist": list(GALLERY),
        "qimlist": list(QUERIES),
        "gnd": [
            {"bbx": [136.5, 34.1, 648.5, 955.4], "easy": [0], "hard": [1], "junk": [2]},
            {"bbx": [10.0, 20.0, 30.0, 40.0], "easy": [], "hard": [4, 3], "junk": []},
        ],
    }


def write_revisited(root: Path, data: Any, name: str = "roxford5k") -> Path:
    """Write `data` as the ground-truth pickle plus an 8x8 jpg for every image name it lists."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"gnd_{name}.pkl").open("wb") as handle:
        pickle.dump(data, handle)
    (root / "jpg").mkdir(exist_ok=True)
    for image in GALLERY + QUERIES:
        Image.new("RGB", (8, 8), (200, 10, 10)).save(root / "jpg" / f"{image}.jpg")
    return root


def test_revisited_reads_ground_truth(tmp_path: Path) -> None:
    root = write_revisited(tmp_path / "roxford5k", revisited_gnd())
    ds = read_revisited(root)
    assert ds.name == "roxford5k"
    assert ds.gallery_names == GALLERY and ds.query_names == QUERIES
    assert ds.gallery_paths[2] == root / "jpg" / "ashmolean_000000.jpg"
    assert ds.query_paths[1] == root / "jpg" / "radcliffe_000390.jpg"
    assert ds.query_bbx.shape == (2, 4)
    assert ds.query_bbx[0].tolist() == [136.5, 34.1, 648.5, 955.4]
    assert ds.gnd[0]["junk"].tolist() == [2]
    assert ds.gnd[1]["hard"].tolist() == [4, 3] and ds.gnd[1]["hard"].dtype == np.int64
    assert ds.gnd[1]["easy"].size == 0


def test_revisited_numpy_arrays_in_pickle(tmp_path: Path) -> None:
    data = revisited_gnd()
    data["gnd"][0] = {
        "bbx": np.array([1.0, 2.0, 3.0, 4.0]),
        "easy": np.array([0, 3]),
        "hard": np.array([1]),
        "junk": np.array([], dtype=np.int64),
    }
    ds = read_revisited(write_revisited(tmp_path / "rparis6k", data, name="rparis6k"), "rparis6k")
    assert ds.name == "rparis6k"
    assert ds.gnd[0]["easy"].tolist() == [0, 3]
    assert ds.query_bbx[0].tolist() == [1.0, 2.0, 3.0, 4.0]


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_revisited_refuses_arbitrary_objects(tmp_path: Path, capsys) -> None:
    data = revisited_gnd()
    data["gnd"][0]["bbx"] = _Exploit()
    root = write_revisited(tmp_path / "roxford5k", data)
    with expect_error("refusing to load builtins.print", "gnd_roxford5k.pkl"):
        read_revisited(root)
    assert "this must never run" not in capsys.readouterr().out


def test_revisited_index_out_of_range(tmp_path: Path) -> None:
    data = revisited_gnd()
    data["gnd"][1]["junk"] = [5]
    with expect_error("index outside imlist", "gnd_roxford5k.pkl", "gnd[1].junk"):
        read_revisited(write_revisited(tmp_path / "r", data))


def test_revisited_malformed_fields(tmp_path: Path) -> None:
    data = revisited_gnd()
    del data["gnd"][0]["bbx"]
    with expect_error("missing", "gnd[0].bbx"):
        read_revisited(write_revisited(tmp_path / "a", data))
    data = revisited_gnd()
    data["gnd"][0]["easy"] = "all_souls_000000"
    with expect_error("expected a list of image indices, got string", "gnd[0].easy"):
        read_revisited(write_revisited(tmp_path / "b", data))
    data = revisited_gnd()
    data["gnd"].pop()
    with expect_error("has 1 entries for 2 queries", "field 'gnd'"):
        read_revisited(write_revisited(tmp_path / "c", data))
    data = revisited_gnd()
    del data["qimlist"]
    with expect_error("missing", "field 'qimlist'"):
        read_revisited(write_revisited(tmp_path / "d", data))


def test_revisited_missing_files(tmp_path: Path) -> None:
    with expect_error("no ground-truth file", str(tmp_path)):
        read_revisited(tmp_path)
    with expect_error("ground-truth file not found", "gnd_rparis6k.pkl"):
        read_revisited(tmp_path, "rparis6k")
    root = write_revisited(tmp_path / "roxford5k", revisited_gnd())
    (root / "jpg" / "balliol_000000.jpg").unlink()
    with expect_error("not found", "balliol_000000.jpg"):
        read_revisited(root)
    (root / "gnd_roxford5k.pkl").write_bytes(b"not a pickle")
    with expect_error("not a readable ground-truth pickle", "gnd_roxford5k.pkl"):
        read_revisited(root)
