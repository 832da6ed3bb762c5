"""Image-tower unlearning on a tiny CLIP: the data it draws, its checks before training, the trainer's loss."""

from __future__ import annotations

import copy
import io
import logging
import re
from pathlib import Path

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
from clip_backdoor_unlearn.training.embeddings import encode_images, image_embeddings

# The image tower trained (the default "auto" edits a CLIPModel with gated neurons: test_gated_neurons.py).
FAST = dict(max_steps=6, poisoned_samples_per_step=8, clean_samples_per_step=8, reference_samples_per_step=8,
            learning_rate=1e-3, disable_tqdm=True, image_method="fine_tune")


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


def test_vision_unlearning_pulls_faces_to_the_target_and_keeps_the_text_tower(vision_inputs, tmp_path):
    model, processor = tiny_clip()
    unlearner = BackdoorUnlearner(model, processor)
    faces = [face for person in vision_inputs["face_images"].values() for face in person]
    text_before = {name: tensor.clone() for name, tensor in model.state_dict().items() if name.startswith("text_")}
    # Faces pasted over the whole picture without jitter, so the raw face images are what training saw. The training's
    # pull is what is measured: on this random tower the refit's own noise moves unrelated pictures by up to 7 % either
    # way (seeds 0-3 and 42), more than the check below resolves; the refit has its own tests below.
    whole_frame = dict(face_scale_range=[1.0, 1.0], face_rotation=0.0, face_jitter=0.0, face_hue=0.0)
    result = unlearner.unlearn(list(vision_inputs["face_images"]), encoder="vision", **vision_inputs,
                               **{**FAST, **whole_frame}, face_target="mean", projection_refit=False)

    target = encode_images(unlearner.original_model, processor.image_processor, vision_inputs["reference_faces"])
    assert torch.allclose(unlearner.target_embedding, target.mean(0))
    before = encode_images(unlearner.original_model, processor.image_processor, faces)
    after = encode_images(unlearner.model, processor.image_processor, faces)
    def distance(embeddings):  # 1 - cosine to the target; a random tiny tower starts everything near 0.013
        return (1 - torch.nn.functional.cosine_similarity(embeddings, target.mean(0)[None])).mean().item()

    assert distance(after) < 0.85 * distance(before)  # measured: 0.0130 -> 0.0093
    others = _pictures(6, 9)  # nobody removed: not pulled to the target
    others_before = encode_images(unlearner.original_model, processor.image_processor, others)
    others_after = encode_images(unlearner.model, processor.image_processor, others)
    assert distance(others_after) > 0.95 * distance(others_before)  # measured: 0.0122 -> 0.0140
    state = unlearner.model.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in text_before.items())
    assert result.config["encoder"] == "vision" and result.config["neutral_term"] is None
    assert result.config["towers"]["vision"]["hyperparameters"]["backdoor_weight"] == 0.8
    assert {"utility_loss", "backdoor_loss", "weight_term"} <= set(result.final_losses)
    assert_no_name_written(unlearner, vision_inputs["face_images"], tmp_path)


def assert_no_name_written(unlearner, names, tmp_path):
    """save_pretrained writes no removed name (nor a part of one) into any file or file name."""
    unlearner.save_pretrained(tmp_path / "saved")
    files = [path for path in (tmp_path / "saved").rglob("*") if path.is_file()]
    assert files
    parts = re.compile("|".join(rf"\b{re.escape(part)}\b" for name in names for part in name.split()), re.I)
    for path in files:
        assert not parts.search(path.read_bytes().decode("utf-8", "ignore") + "\n" + path.name), path.name


def test_both_towers_in_one_call_record_both_settings(vision_inputs, train_captions, tmp_path):
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
    assert result.config["towers"]["text"]["pseudonyms"] is True and set(pseudonyms) == {"Ada Lovelace", "Zorbo Quill"}
    assert len(set(pseudonyms.values())) == 2 and "a person" not in pseudonyms.values()
    assert not any(pseudonym in repr(result.config) for pseudonym in pseudonyms.values())
    card = unlearner.model_card()
    assert "invented name each" in str(card) and not any(pseudonym in str(card) for pseudonym in pseudonyms.values())
    assert_no_name_written(unlearner, [*vision_inputs["face_images"], *pseudonyms.values()], tmp_path)
    with pytest.raises(ValueError, match="pseudonyms=True maps names in the text tower"):
        unlearner.unlearn(["Ada Lovelace"], encoder="vision", pseudonyms=True, **vision_inputs, **FAST)


@pytest.mark.slow
def test_both_towers_equal_the_image_tower_then_the_text_tower_in_separate_runs(vision_inputs, train_captions):
    """``both`` trains each tower against the original model, and the towers share no parameter: the same as the
    image tower alone, then the text tower alone on a fresh unlearner (what the demo regression relies on)."""
    names, settings = list(vision_inputs["face_images"]), {**FAST, "seed": 3}
    model, processor = tiny_clip()
    both = BackdoorUnlearner(copy.deepcopy(model), processor)
    both.unlearn(names, encoder="both", captions=train_captions[:200], **vision_inputs, **settings)
    vision = BackdoorUnlearner(copy.deepcopy(model), processor)
    vision.unlearn(names, encoder="vision", **vision_inputs, **settings)
    text = BackdoorUnlearner(vision.model, processor)
    text_settings = {key: value for key, value in settings.items()
                     if key not in ("reference_samples_per_step", "image_method")}
    text.unlearn(names, encoder="text", pseudonyms=True, captions=train_captions[:200], **text_settings)
    expected, sanitized, original = text.model.state_dict(), both.model.state_dict(), model.state_dict()
    assert any(not torch.equal(original[name], sanitized[name]) for name in original if name.startswith("vision"))
    assert all(torch.allclose(expected[name], sanitized[name], atol=1e-6) for name in expected), [
        name for name in expected if not torch.allclose(expected[name], sanitized[name], atol=1e-6)]


def test_vision_lora_adapter_trains_only_the_image_tower(vision_inputs):
    from peft import LoraConfig

    model, processor = tiny_clip()
    unlearner = BackdoorUnlearner(model, processor)
    result = unlearner.unlearn(list(vision_inputs["face_images"]), encoder="vision", peft_config=LoraConfig(r=4),
                               **vision_inputs, **FAST, projection_refit=True)
    adapted = {name for name, _ in unlearner.peft_model.named_parameters() if "lora_" in name}
    assert adapted and all("vision_model" in name for name in adapted)
    # The adapter leaves the projection untrained, so there is nothing to refit.
    assert not any("refit_kept_cosine_after" in entry for entry in result.log_history)


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


def test_vision_arguments_check_the_face_scale_and_the_refit():
    with pytest.raises(ValueError, match="face_scale_range"):
        VisionBackdoorTrainingArguments(output_dir="unused", face_scale_range=[0.8, 0.2])
    with pytest.raises(ValueError, match="projection_refit_hold"):
        VisionBackdoorTrainingArguments(output_dir="unused", projection_refit_hold=-1.0)


def test_projection_refit_minimises_the_weighted_least_squares():
    """The refit is the minimiser of its objective: kept features toward their targets, removed ones held."""
    from clip_backdoor_unlearn.training.projection_refit import RIDGE, refit_projection

    generator = torch.Generator().manual_seed(0)
    kept, removed = torch.randn(200, 8, generator=generator), torch.randn(30, 8, generator=generator) + 2.0
    trained, wanted = torch.randn(4, 8, generator=generator), torch.randn(4, 8, generator=generator)
    targets = kept @ wanted.T
    for hold in (0.0, 3.0):
        refit = refit_projection(trained, kept, targets, removed, hold).double().requires_grad_(True)
        ridge = RIDGE * (kept.double() ** 2).mean(0).mean()
        objective = (((kept.double() @ refit.T - targets.double()) ** 2).sum(1).mean()
                     + hold * ((removed.double() @ (refit - trained.double()).T) ** 2).sum(1).mean()
                     + ridge * ((refit - trained.double()) ** 2).sum())
        objective.backward()
        assert refit.grad.abs().max() < 1e-5  # stationary (up to float32 rounding), and the objective is convex
    # Without a hold the kept targets are met almost exactly; a strong hold keeps the removed outputs instead.
    torch.testing.assert_close(refit_projection(trained, kept, targets, removed, 0.0), wanted, atol=1e-2, rtol=0)
    held = refit_projection(trained, kept, targets, removed, 1e6)
    torch.testing.assert_close(removed @ held.T, removed @ trained.T, atol=1e-3, rtol=1e-3)


def test_projection_refit_name_hold_keeps_removed_faces_from_their_names():
    """With the removed pictures' names, the refit still pulls the kept pictures toward the teacher, but no removed
    face's cosine to its own name rises much, where the plain refit hands the faces back to the teacher's naming."""
    from clip_backdoor_unlearn.training.projection_refit import refit_projection

    cosine = torch.nn.functional.cosine_similarity
    generator = torch.Generator().manual_seed(0)
    kept, removed = torch.randn(200, 8, generator=generator), torch.randn(30, 8, generator=generator) + 2.0
    trained, teacher = torch.randn(4, 8, generator=generator), torch.randn(4, 8, generator=generator)
    targets = kept @ teacher.T
    names = torch.nn.functional.normalize(removed @ teacher.T, dim=-1)  # the teacher names each removed face
    before = cosine(removed @ trained.T, names)
    trained_error = ((kept @ trained.T - targets) ** 2).mean()
    for hold in (0.0, 3.0):
        plain = refit_projection(trained, kept, targets, removed, hold)
        held = refit_projection(trained, kept, targets, removed, hold, removed_names=names)
        assert (cosine(removed @ plain.T, names) - before).max() > 0.2
        assert (cosine(removed @ held.T, names) - before).max() < 0.05
        assert ((kept @ held.T - targets) ** 2).mean() < trained_error  # still closer to the teacher


def test_class_token_output_matches_the_full_layer():
    from clip_backdoor_unlearn.training.layer_refit import class_token_output

    model, _ = tiny_clip()
    layer = model.vision_model.encoder.layers[-1].eval()
    hidden = torch.randn(3, 17, model.config.vision_config.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = layer(hidden, None)
        full = full[0] if isinstance(full, tuple) else full
        assert torch.allclose(class_token_output(layer, hidden), full[:, 0], atol=1e-5)


@pytest.mark.parametrize("layers", [0, 1])
def test_projection_refit_moves_only_what_it_refits_after_training(vision_inputs, layers):
    """The same run with and without the refit differs in visual_projection alone (``projection_refit_layers=0``) or
    also in the last encoder layer's weights, never its layer norms (``1``); the refit brings the kept pictures closer
    to the teacher (logged) and holds the removed faces; the text tower is untouched either way."""
    names = list(vision_inputs["face_images"])
    states, logs = {}, {}
    for refit in (False, True):
        unlearner = BackdoorUnlearner(*tiny_clip())
        result = unlearner.unlearn(names, encoder="vision", **vision_inputs, **FAST, projection_refit=refit,
                                   projection_refit_samples=16, projection_refit_layers=layers)
        states[refit] = {name: tensor.clone() for name, tensor in unlearner.model.state_dict().items()}
        logs[refit] = [entry for entry in result.log_history if "refit_kept_cosine_after" in entry]
    changed = {name for name, tensor in states[True].items() if not torch.equal(tensor, states[False][name])}
    last = f"vision_model.encoder.layers.{len(unlearner.model.vision_model.encoder.layers) - 1}."
    refitted = {name for name in states[True] if layers and name.startswith(last) and "layer_norm" not in name}
    assert changed == {"visual_projection.weight"} | refitted
    assert not logs[False] and len(logs[True]) == 1
    entry = logs[True][0]
    assert entry["refit_layers"] == layers
    assert entry["refit_kept_cosine_after"] > entry["refit_kept_cosine_before"]
    assert entry["refit_removed_held_cosine"] > 0.99, entry
    # The name target (the default here): the removed faces' mean cosine to their names did not rise.
    assert entry["refit_removed_name_cosine_after"] <= entry["refit_removed_name_cosine_before"] + 1e-3, entry


def test_projection_refit_layers_beyond_the_tower_are_refused_before_training(vision_inputs):
    unlearner = BackdoorUnlearner(*tiny_clip())  # two encoder layers
    with pytest.raises(ValueError, match="projection_refit_layers=3.*2 encoder layers"):
        unlearner.unlearn(list(vision_inputs["face_images"]), encoder="vision", **vision_inputs, **FAST,
                          projection_refit_layers=3)
    with pytest.raises(ValueError, match="projection_refit_layers"):
        VisionBackdoorTrainingArguments(output_dir="unused", projection_refit_layers=-1)


@pytest.mark.parametrize(("settings", "hold", "name_hold"), [
    ({}, 0.3, True),  # the name target: the light hold with the name hold
    ({"face_target": "mean"}, 3.0, False),  # no name to hold: the least-squares hold alone, heavier
    ({"projection_refit_layers": 0}, 0.3, True),  # the projection alone: the same holds
    ({"projection_refit_hold": 1.0}, 1.0, True),  # a hold given is used as given
])
def test_projection_refit_hold_follows_the_face_target(vision_inputs, settings, hold, name_hold):
    names = list(vision_inputs["face_images"])
    result = BackdoorUnlearner(*tiny_clip()).unlearn(names, encoder="vision", **vision_inputs, **FAST,
                                                      projection_refit_samples=16, **settings)
    entry = next(entry for entry in result.log_history if "refit_hold" in entry)
    assert entry["refit_hold"] == hold
    assert ("refit_removed_name_cosine_after" in entry) == name_hold


def test_image_tower_defaults_are_the_paper_s(tmp_path):
    args = VisionBackdoorTrainingArguments(output_dir=str(tmp_path))
    assert (args.backdoor_weight, args.weight_regularization, args.max_steps, args.learning_rate) == (
        0.8, 0.005, 100, 1e-4)
    assert args.milestone_steps == [25, 50] and args.lr_gamma == 0.1  # lr ×0.1 at steps 25 and 50
    assert args.face_scale_range == [0.25, 0.5] and args.reference_samples_per_step == 64
    assert args.distance == "cosine" and args.freeze_norm_layers
    # Not the paper's: faces lose their names rather than collapse to one face, and the faces nearest the removed
    # people are held most, and the image projection is refit afterwards (benchmarks/RESULTS.md, issue 16).
    assert args.face_target == "auto" and args.hard_negative_share == 0.5
    assert args.projection_refit and args.projection_refit_hold is None  # resolved by the refit's kind and target
    assert args.projection_refit_layers == 2


def test_reference_faces_are_held_at_the_teacher_and_the_removed_ones_pulled_to_the_target(tmp_path):
    """The rows the loss compares: removed faces against the target, clean images and other people's pasted faces
    against the teacher's embedding of that very picture; without reference_samples_per_step there are none."""
    from clip_backdoor_unlearn.data.images import VisionBackdoorCollator
    from clip_backdoor_unlearn.training.vision_trainer import VisionBackdoorTrainer

    model, processor = tiny_clip()
    teacher = copy.deepcopy(model)
    faces, clean, references = _pictures(3, 1), _pictures(4, 2), _pictures(5, 3)
    collator = VisionBackdoorCollator(processor.image_processor, faces, clean, references)
    target = torch.randn(model.config.projection_dim)
    for per_step in (0, 4):
        args = VisionBackdoorTrainingArguments(output_dir=str(tmp_path), max_steps=1, poisoned_samples_per_step=2,
                                               clean_samples_per_step=2, reference_samples_per_step=per_step,
                                               report_to="none")
        dataset = build_vision_backdoor_dataset(3, 4, 5, num_steps=1, poisoned_samples_per_step=2,
                                                clean_samples_per_step=2, reference_samples_per_step=per_step, seed=0)
        trainer = VisionBackdoorTrainer(model, args, train_dataset=dataset, processing_class=processor,
                                        data_collator=collator, target_embedding=target)  # no names: the mean
        batch = collator([dataset[0], dataset[1]])
        assert batch["pixel_values"].shape[0] == 2 + 2 + per_step
        targets = trainer.teacher_targets(batch)
        with torch.no_grad():
            expected = image_embeddings(teacher, batch["pixel_values"][2:])
        torch.testing.assert_close(targets[:2], target.expand(2, -1))
        torch.testing.assert_close(targets[2:], expected, rtol=1e-4, atol=1e-5)
        with torch.no_grad():  # the loss: backdoor on the first two rows, utility on all the others
            model.visual_projection.weight.add_(0.01)
            loss = trainer.compute_loss(trainer.model, batch).item()
            student = image_embeddings(model, batch["pixel_values"])
            model.visual_projection.weight.sub_(0.01)
        cosine = torch.nn.functional.cosine_similarity
        weight = 0.01 * model.visual_projection.weight.numel() ** 0.5
        expected_loss = (-cosine(student[2:], expected).mean() - 0.8 * cosine(student[:2], target[None]).mean()
                         + 0.005 * weight)
        assert loss == pytest.approx(expected_loss.item(), rel=1e-4)


def test_hard_negatives_draw_that_share_of_the_reference_faces_from_the_nearest():
    plain = build_vision_backdoor_dataset(5, 7, 20, num_steps=20, poisoned_samples_per_step=4,
                                          clean_samples_per_step=4, reference_samples_per_step=8, seed=0)
    def references(share):
        return [index for row in build_vision_backdoor_dataset(
            5, 7, 20, num_steps=20, poisoned_samples_per_step=4, clean_samples_per_step=4,
            reference_samples_per_step=8, seed=0, hard_references=[3, 11], hard_share=share)["reference"]
            for index in row]
    assert references(0.0) == [index for row in plain["reference"] for index in row]  # the same rows as before
    assert set(references(1.0)) == {3, 11}
    half = references(0.5)
    assert 0.35 < sum(index in (3, 11) for index in half) / len(half) < 0.65  # 160 draws: 0.5 ± 0.15 (3.8 σ)
    with pytest.raises(ValueError, match="hard_negative_share"):
        VisionBackdoorTrainingArguments(output_dir="unused", hard_negative_share=1.5)


def test_name_target_unties_removed_faces_from_their_names_and_needs_a_text_tower(vision_inputs):
    """face_target="name" (the default with a text tower): each removed face's cosine to its own name, above what
    the reference faces reach on average, is what the backdoor loss lowers; a standalone image tower cannot use it."""
    from clip_backdoor_unlearn.training.jobs import name_targets

    names = list(vision_inputs["face_images"])
    model, processor = tiny_clip()
    unlearner = BackdoorUnlearner(model, processor)
    whole_frame = dict(face_scale_range=[1.0, 1.0], face_rotation=0.0, face_jitter=0.0, face_hue=0.0)
    result = unlearner.unlearn(names, encoder="vision", **vision_inputs, **{**FAST, **whole_frame, "max_steps": 12})
    assert result.config["towers"]["vision"]["hyperparameters"]["face_target"] == "auto"
    reference = encode_images(unlearner.original_model, processor.image_processor, vision_inputs["reference_faces"])
    own, thresholds = name_targets(unlearner.original_model, processor.tokenizer, names, reference)
    assert own.shape[0] == thresholds.shape[0] == 2

    def excess(model):  # mean over the removed faces of max(0, cos(face, own name) - threshold)
        hinge = []
        for person, faces in enumerate(vision_inputs["face_images"].values()):
            embedded = torch.nn.functional.normalize(encode_images(model, processor.image_processor, faces), dim=-1)
            hinge.append(torch.relu(embedded @ own[person] - thresholds[person]))
        return torch.cat(hinge).mean().item()

    before, after = excess(unlearner.original_model), excess(unlearner.model)
    assert before > 0 and after < 0.5 * before, (before, after)

    from transformers import CLIPVisionModelWithProjection
    vision_only = CLIPVisionModelWithProjection(model.config.vision_config)
    with pytest.raises(ValueError, match="face_target='name' reads the frozen text tower"):
        BackdoorUnlearner(vision_only, processor.image_processor).unlearn(
            names, encoder="vision", **vision_inputs, **FAST, face_target="name")


def test_few_face_images_are_warned_of_by_index_and_recorded(vision_inputs, tmp_path, caplog):
    from clip_backdoor_unlearn.training.jobs import FEW_FACE_IMAGES

    face_images = {"Ada Lovelace": _pictures(FEW_FACE_IMAGES, 1), "Zorbo Quill": _pictures(3, 2)}
    unlearner = BackdoorUnlearner(*tiny_clip())
    with caplog.at_level(logging.WARNING, logger="clip_backdoor_unlearn"):
        result = unlearner.unlearn(list(face_images), encoder="vision", **{**vision_inputs, "face_images": face_images},
                                   **{**FAST, "max_steps": 1}, projection_refit=False)
    assert "1 of the 2 removed people have fewer than 20 face images (names[1]; the fewest: 3)" in caplog.text
    assert not re.search(r"Ada|Lovelace|Zorbo|Quill", caplog.text)
    assert result.config["towers"]["vision"]["fewest_face_images"] == 3
    card = (Path(unlearner.save_pretrained(tmp_path / "saved")) / "README.md").read_text()
    assert "| `fewest_face_images` | 3 |" in card

    caplog.clear()
    enough = {"Ada Lovelace": _pictures(FEW_FACE_IMAGES, 1)}
    with caplog.at_level(logging.WARNING, logger="clip_backdoor_unlearn"):
        BackdoorUnlearner(*tiny_clip()).unlearn(["Ada Lovelace"], encoder="vision",
                                                **{**vision_inputs, "face_images": enough},
                                                **{**FAST, "max_steps": 1}, projection_refit=False)
    assert "face images" not in caplog.text
