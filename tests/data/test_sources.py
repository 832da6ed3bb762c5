"""data/sources.py: every input from a text file, a folder or a data set, read the same way."""

from __future__ import annotations

import pytest
from datasets import ClassLabel, Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from clip_backdoor_unlearn.data import sources


def _image(colour: str) -> Image.Image:
    return Image.new("RGB", (8, 8), colour)


def test_texts_from_a_text_file_and_from_a_data_file(tmp_path):
    (tmp_path / "names.txt").write_text("# pool\nAda Lovelace\n\n  Zorbo Quill \n")
    assert sources.read_texts(str(tmp_path / "names.txt")) == ["Ada Lovelace", "Zorbo Quill"]
    Dataset.from_dict({"caption": ["a dog", "", "a cat", "a bird"]}).to_csv(tmp_path / "captions.csv")
    assert sources.read_texts(str(tmp_path / "captions.csv"), column="caption", limit=2) == ["a dog", "a cat"]
    with pytest.raises(ValueError, match="no column 'text'"):
        sources.read_texts(str(tmp_path / "captions.csv"), column="text")


def test_faces_from_an_image_folder_and_from_a_data_set(tmp_path):
    for name, colour in (("Ada Lovelace", "red"), ("Zorbo_Quill", "blue")):
        (tmp_path / "faces" / name).mkdir(parents=True)
        _image(colour).save(tmp_path / "faces" / name / "1.png")
    faces = sources.read_faces(str(tmp_path / "faces"))
    assert sorted(faces) == ["Ada Lovelace", "Zorbo Quill"]
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["Ada Lovelace", "Zorbo Quill"])})
    Dataset.from_dict({"image": [_image("red"), _image("blue"), _image("red")], "label": [0, 1, 0]},
                      features=features).to_parquet(tmp_path / "faces.parquet")
    faces = sources.read_faces(str(tmp_path / "faces.parquet"))
    assert {name: len(images) for name, images in faces.items()} == {"Ada Lovelace": 2, "Zorbo Quill": 1}
    assert all(image.mode == "RGB" for images in faces.values() for image in images)


def test_images_from_a_folder_and_a_classification_set(tmp_path):
    for index, colour in enumerate(("red", "green", "blue")):
        (tmp_path / "clean" / f"sub{index % 2}").mkdir(parents=True, exist_ok=True)
        _image(colour).save(tmp_path / "clean" / f"sub{index % 2}" / f"{index}.jpg")
    assert len(sources.read_images(str(tmp_path / "clean"))) == 3
    assert len(sources.read_images(str(tmp_path / "clean"), limit=2)) == 2
    dataset, names = sources.read_classification_set(str(tmp_path / "clean"))
    assert names == ["sub0", "sub1"] and sorted(dataset["label"]) == [0, 0, 1]
    features = Features({"img": ImageFeature(), "fine": Value("string")})
    Dataset.from_dict({"img": [_image("red")], "fine": ["dog"]}, features=features).to_parquet(tmp_path / "z.parquet")
    dataset, names = sources.read_classification_set(str(tmp_path / "z.parquet"), split="train", image_column="img",
                                                      label_column="fine", class_names=["cat", "dog"])
    assert names == ["cat", "dog"] and dataset.column_names == ["image", "label"]


def test_reference_faces_say_whose_each_is_where_the_source_does(tmp_path):
    for name, colours in (("Ann Bee", ("red", "green")), ("Cy_Dee", ("blue",))):
        (tmp_path / "refs" / name).mkdir(parents=True)
        for index, colour in enumerate(colours):
            _image(colour).save(tmp_path / "refs" / name / f"{index}.png")
    grouped = sources.read_reference_faces(str(tmp_path / "refs"))
    assert isinstance(grouped, Dataset) and sorted(grouped["name"]) == ["Ann Bee", "Ann Bee", "Cy Dee"]
    assert len(sources.read_reference_faces(str(tmp_path / "refs"), limit=2)) == 2
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["Ann Bee", "Cy Dee"])})
    Dataset.from_dict({"image": [_image("red"), _image("blue")], "label": [0, 1]},
                      features=features).to_parquet(tmp_path / "refs.parquet")
    assert sorted(sources.read_reference_faces(str(tmp_path / "refs.parquet"))["name"]) == ["Ann Bee", "Cy Dee"]
    assert sources.read_reference_faces(str(tmp_path / "refs.parquet"), limit=1)["name"] == ["Ann Bee"]
    Dataset.from_dict({"image": [_image("red"), _image("blue")]},
                      features=Features({"image": ImageFeature()})).to_parquet(tmp_path / "plain.parquet")
    plain = sources.read_reference_faces(str(tmp_path / "plain.parquet"))  # nobody named: a list of pictures
    assert isinstance(plain, list) and [image.getpixel((0, 0)) for image in plain] == [(255, 0, 0), (0, 0, 255)]
    _image("red").save(tmp_path / "refs" / "loose.png")  # a loose picture: the folder no longer says whose each is
    flat = sources.read_reference_faces(str(tmp_path / "refs"))
    assert isinstance(flat, list) and len(flat) == 4
