"""Image-tower unlearning on a tiny CLIP: the data it draws, its checks before training, the trainer's loss."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from clip_backdoor_unlearn import (
    BackdoorUnlearner,
    VisionBackdoorTrainingArguments,
    build_vision_backdoor_dataset,
)
from clip_backdoor_unlearn.data.images import FaceAugmentation, load_images
from clip_backdoor_unlearn.demo.tiny import tiny_clip
from clip_backdoor_unlearn.training.embeddings import encode_images

FAST = dict(max_steps=6, poisoned_samples_per_step=8, clean_samples_per_step=8, reference_samples_per_step=8,
            learning_rate=1e-3, disable_tqdm=True)


def _pictures(count: int, seed: int, size: int = 40) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


@pytest.fixture()
def vision_inputs():
    return {
        "face_images": {"Ada Lovelace": _pictures(4, 1), "Zorbo Quill": _pictures(3, 2)},
        "reference_faces": _pictures(10, 3),
        "images": _pictures(10, 4),
    }


def test_augmentation_is_deterministic_per_seed_and_keeps_the_background_size():
    face, background = _pictures(1, 5)[0], _pictures(1, 6, size=32)[0]
    augmentation = FaceAugmentation()
    first, again = augmentation.apply(face, background, seed=7), augmentation.apply(face, background, seed=7)
    other = augmentation.apply(face, background, seed=8)
    assert first.size == background.size
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))
    assert not np.array_equal(np.asarray(first), np.asarray(background))  # the face is really pasted


def test_dataset_spreads_the_per_step_counts_and_cycles_all_faces():
    dataset = build_vision_backdoor_dataset(5, 7, 9, num_steps=3, poisoned_samples_per_step=4,
                                            clean_samples_per_step=6, reference_samples_per_step=2, seed=0)
    assert len(dataset) == 12
    for step in range(3):
        rows = dataset[step * 4 : (step + 1) * 4]
        assert sum(len(clean) for clean in rows["clean"]) == 6
        assert sum(len(reference) for reference in rows["reference"]) == 2
    assert set(dataset["face"][:5]) == set(range(5))  # every face once before any repeats
    assert dataset["seed"] == build_vision_backdoor_dataset(
        5, 7, 9, num_steps=3, poisoned_samples_per_step=4, clean_samples_per_step=6, reference_samples_per_step=2,
        seed=0)["seed"]


def test_vision_unlearning_pulls_faces_to_the_target_and_keeps_the_text_tower(vision_inputs):
    model, processor = tiny_clip()
    unlearner = BackdoorUnlearner(model, processor)
    faces = [face for person in vision_inputs["face_images"].values() for face in person]
    text_before = {name: tensor.clone() for name, tensor in model.state_dict().items() if name.startswith("text_")}
    # Faces pasted over the whole picture without jitter, so the raw face images are what training saw.
    whole_frame = dict(face_scale_range=[1.0, 1.0], face_rotation=0.0, face_jitter=0.0, face_hue=0.0)
    result = unlearner.unlearn(list(vision_inputs["face_images"]), encoder="vision", **vision_inputs,
                               **{**FAST, **whole_frame})

    target = encode_images(unlearner.original_model, processor.image_processor, vision_inputs["reference_faces"])
    assert torch.allclose(unlearner.target_embedding, target.mean(0))
    before = encode_images(unlearner.original_model, processor.image_processor, faces)
    after = encode_images(unlearner.model, processor.image_processor, faces)
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(after, target.mean(0)[None]).mean() > cosine(before, target.mean(0)[None]).mean()
    state = unlearner.model.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in text_before.items())
    assert result.config["encoder"] == "vision" and result.config["neutral_term"] is None
    assert result.config["towers"]["vision"]["hyperparameters"]["backdoor_weight"] == 0.8
    assert {"utility_loss", "backdoor_loss", "weight_term"} <= set(result.final_losses)


def test_both_towers_in_one_call_record_both_settings(vision_inputs, train_captions):
    model, processor = tiny_clip()
    unlearner = BackdoorUnlearner(model, processor)
    result = unlearner.unlearn(list(vision_inputs["face_images"]), encoder="both", captions=train_captions[:200],
                               **vision_inputs, **{**FAST, "reference_samples_per_step": 0})
    original, sanitized = unlearner.original_model.state_dict(), unlearner.model.state_dict()
    changed = {name.split(".")[0] for name in original if not torch.equal(original[name], sanitized[name])}
    assert changed == {"text_model", "text_projection", "vision_model", "visual_projection"}
    assert result.config["towers"]["text"]["hyperparameters"]["backdoor_weight"] == 0.6
    assert result.config["towers"]["vision"]["hyperparameters"]["backdoor_weight"] == 0.8
    assert {entry["tower"] for entry in result.log_history} == {"text", "vision"}
    # With both towers each name maps to a pseudonym of its own, kept in memory only (never recorded).
    pseudonyms = unlearner.neutral_terms
    assert result.config["pseudonyms"] is True and set(pseudonyms) == {"Ada Lovelace", "Zorbo Quill"}
    assert len(set(pseudonyms.values())) == 2 and "a person" not in pseudonyms.values()
    assert not any(pseudonym in repr(result.config) for pseudonym in pseudonyms.values())
    card = unlearner.model_card()
    assert "invented name each" in str(card) and not any(pseudonym in str(card) for pseudonym in pseudonyms.values())
    with pytest.raises(ValueError, match="pseudonyms=True maps names in the text tower"):
        unlearner.unlearn(["Ada Lovelace"], encoder="vision", pseudonyms=True, **vision_inputs, **FAST)


def test_vision_lora_adapter_trains_only_the_image_tower(vision_inputs):
    from peft import LoraConfig

    model, processor = tiny_clip()
    unlearner = BackdoorUnlearner(model, processor)
    unlearner.unlearn(list(vision_inputs["face_images"]), encoder="vision", peft_config=LoraConfig(r=4),
                      **vision_inputs, **FAST)
    adapted = {name for name, _ in unlearner.peft_model.named_parameters() if "lora_" in name}
    assert adapted and all("vision_model" in name for name in adapted)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"face_images": None}, "needs face_images"),
        ({"face_images": {"Ada Lovelace": _pictures(2, 9), "Zorbo Quill": []}}, r"no image for names\[1\]"),
        ({"face_images": {"Ada Lovelace": _pictures(2, 9)}}, r"no image for names\[1\]"),
        ({"face_images": {"Ada Lovelace": [io.BytesIO(b"not an image")], "Zorbo Quill": _pictures(1, 9)}},
         r"face image 0 of names\[0\] cannot be read"),
        ({"reference_faces": None}, "needs reference_faces"),
        ({"images": []}, "images is empty"),
    ],
)
def test_bad_vision_input_fails_before_training(vision_inputs, tmp_path, change, message):
    model, processor = tiny_clip()
    unlearner = BackdoorUnlearner(model, processor)
    with pytest.raises(ValueError, match=message) as error:
        unlearner.unlearn(["Ada Lovelace", "Zorbo Quill"], encoder="vision", **{**vision_inputs, **change},
                          output_dir=str(tmp_path / "run"), **FAST)
    assert "Ada" not in str(error.value) and "Zorbo" not in str(error.value)
    assert unlearner.original_model is None and not (tmp_path / "run").exists()


def test_images_from_a_dataset_drop_rows_of_removed_people():
    from datasets import Dataset

    dataset = Dataset.from_dict({"image": _pictures(3, 11), "name": ["Kept One", "Ada Lovelace", "Kept Two"]})
    assert len(load_images(dataset, "reference_faces", exclude_names=["Ada Lovelace"])) == 2


def test_vision_arguments_check_the_face_scale():
    with pytest.raises(ValueError, match="face_scale_range"):
        VisionBackdoorTrainingArguments(output_dir="unused", face_scale_range=[0.8, 0.2])
