"""The image tower edited with gated neurons (``image_method="gated_neurons"``) on a tiny CLIP: what the edit
computes, that it unties the removed faces from their names and keeps the rest, what it saves and records, and what
it refuses before touching the model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPModel, CLIPVisionModelWithProjection

from clip_backdoor_unlearn import BackdoorUnlearner, VisionBackdoorTrainingArguments
from clip_backdoor_unlearn.data.images import load_images, reference_people
from clip_backdoor_unlearn.demo.tiny import tiny_clip
from clip_backdoor_unlearn.training.embeddings import encode_images, encode_texts
from clip_backdoor_unlearn.training.gated_neurons import (
    HELD_PEOPLE,
    Features,
    GatedHead,
    GatedNeurons,
    add_gated_neurons,
    class_token_features,
    fit_gated_neurons,
    held_kept_weight,
    same_person_partners,
    whitened_starts,
    within_person_scatter,
)
from clip_backdoor_unlearn.training.jobs import name_targets, read_prior, resolve_image_method

pytestmark = pytest.mark.usefixtures("single_thread")
GATED = dict(image_method="gated_neurons", gated_steps=300, disable_tqdm=True)
PER_PERSON = VisionBackdoorTrainingArguments.gated_neurons_per_person  # the default
unit = torch.nn.functional.normalize


def _pictures(count: int, seed: int, size: int = 40) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


@pytest.fixture()
def inputs():
    return {"face_images": {"Ada Lovelace": _pictures(4, 1), "Zorbo Quill": _pictures(3, 2)},
            "reference_faces": _pictures(10, 3), "images": _pictures(12, 4)}


def _excess(model, processor, inputs, own, thresholds) -> torch.Tensor:
    """Each removed face's cosine to its own name above what an anonymous face reaches (the name target)."""
    rows = []
    for person, faces in enumerate(inputs["face_images"].values()):
        embedded = unit(encode_images(model, processor.image_processor, faces), dim=-1)
        rows.append(embedded @ own[person] - thresholds[person])
    return torch.cat(rows)


def test_added_neurons_compute_the_fitted_edit_and_zero_ones_change_nothing():
    """The wider model computes exactly what the fit optimised (the head on cached features), and the other layers'
    zero neurons, or zero writes, leave every embedding as it was."""
    model, processor = tiny_clip()
    pictures = _pictures(6, 7)
    before = encode_images(model, processor.image_processor, pictures)
    features = class_token_features(model, processor.image_processor, iter(pictures))
    width = model.config.vision_config.hidden_size
    generator = torch.Generator().manual_seed(0)
    neurons = GatedNeurons(torch.randn(3, width, generator=generator), torch.randn(3, generator=generator),
                           torch.randn(3, width, generator=generator))
    with torch.no_grad():
        expected = GatedHead(model)(features, neurons)
    silent = copy.deepcopy(model)
    add_gated_neurons(silent, GatedNeurons(neurons.read, neurons.bias, torch.zeros(3, width)))
    assert torch.allclose(encode_images(silent, processor.image_processor, pictures), before, atol=1e-5)
    intermediate = model.config.vision_config.intermediate_size
    add_gated_neurons(model, neurons)
    assert model.config.vision_config.intermediate_size == intermediate + 3
    assert all(layer.mlp.fc1.out_features == intermediate + 3 for layer in model.vision_model.encoder.layers)
    assert torch.allclose(encode_images(model, processor.image_processor, pictures), expected, atol=1e-5)
    assert not torch.allclose(expected, before, atol=1e-3)  # the random neurons did write


def test_gated_edit_unties_the_faces_and_keeps_the_rest(inputs, tmp_path):
    model, processor = tiny_clip()
    names = list(inputs["face_images"])
    unlearner = BackdoorUnlearner(model, processor)
    source = copy.deepcopy(model.state_dict())
    width = model.config.vision_config.intermediate_size
    result = unlearner.unlearn(names, encoder="vision", **inputs, **GATED)

    assert unlearner.model.config.vision_config.intermediate_size == width + PER_PERSON * len(names)
    assert all(torch.equal(value, source[key]) for key, value in unlearner.original_model.state_dict().items())
    references = encode_images(unlearner.original_model, processor.image_processor, inputs["reference_faces"])
    own, thresholds = name_targets(unlearner.original_model, processor.tokenizer, names, references)
    before = _excess(unlearner.original_model, processor, inputs, own, thresholds)
    after = _excess(unlearner.model, processor, inputs, own, thresholds)
    assert before.max() > 0 and after.max() < 0, (before, after)  # every given face below its name's threshold
    clean = torch.nn.functional.cosine_similarity(
        encode_images(unlearner.model, processor.image_processor, inputs["images"]),
        encode_images(unlearner.original_model, processor.image_processor, inputs["images"]))
    assert clean.min() > 0.9, clean
    texts = ["a photo of a dog", "Ada Lovelace"]
    assert torch.equal(encode_texts(unlearner.model, processor.tokenizer, texts),
                       encode_texts(unlearner.original_model, processor.tokenizer, texts))  # the text tower as it was

    vision = result.config["towers"]["vision"]
    assert vision["gated_neurons_added"] == PER_PERSON * len(names) and vision["trained_steps"] == 0
    assert set(vision["hyperparameters"]) == {"image_method", "gated_neurons_per_person", "gated_margin",
                                              "gated_kept_weight", "gated_steps", "gated_learning_rate",
                                              "gated_lr_scheduler_type", "gated_feature_noise", "gated_pair_noise",
                                              "gated_bias_shift", "gated_read_prior", "seed"}
    for setting in ("gated_feature_noise", "gated_pair_noise", "gated_lr_scheduler_type"):  # the defaults, recorded
        assert vision["hyperparameters"][setting] == getattr(VisionBackdoorTrainingArguments, setting)
    assert result.log_history[-1]["gated_neurons_added"] == PER_PERSON * len(names)
    assert result.seconds_per_step is None and result.config["method"].startswith("gated neurons")

    saved = unlearner.save_pretrained(tmp_path / "sanitized")
    for model_class in (CLIPModel, CLIPVisionModelWithProjection):
        loaded = model_class.from_pretrained(saved)
        assert torch.allclose(encode_images(loaded, processor.image_processor, inputs["images"]),
                              encode_images(unlearner.model, processor.image_processor, inputs["images"]), atol=1e-5)
    card = (tmp_path / "sanitized" / "README.md").read_text()
    assert "No weight was trained" in card and "Undone by anyone with the weights" in card
    assert f"intermediate_size` grew by {PER_PERSON * len(names)}" in card and "backdoor_weight" not in card
    assert "Ada" not in card and "Zorbo" not in card


def test_the_bias_shift_moves_only_the_added_neurons_biases_by_that_much(inputs):
    """Same seed, same fit: ``gated_bias_shift`` adds exactly its value to each added neuron's bias and changes no
    other weight; the shifted gates open on the removed faces at least as much, and it is recorded."""
    names = list(inputs["face_images"])
    runs = {}
    for shift in (0.0, 0.5):
        model, processor = tiny_clip()
        unlearner = BackdoorUnlearner(model, processor)
        result = unlearner.unlearn(names, encoder="vision", **inputs, gated_bias_shift=shift, **GATED)
        runs[shift] = (unlearner.model.state_dict(), result.config["towers"]["vision"]["hyperparameters"])
    (plain, plain_record), (shifted, shifted_record) = runs[0.0], runs[0.5]
    last = max(int(key.split(".")[3]) for key in plain if key.startswith("vision_model.encoder.layers."))
    bias = f"vision_model.encoder.layers.{last}.mlp.fc1.bias"
    added = len(names) * PER_PERSON
    assert torch.allclose(shifted[bias][-added:], plain[bias][-added:] + 0.5)
    assert torch.equal(shifted[bias][:-added], plain[bias][:-added])
    assert all(torch.equal(shifted[key], value) for key, value in plain.items() if key != bias)
    assert plain_record["gated_bias_shift"] == 0.0 and shifted_record["gated_bias_shift"] == 0.5


def test_the_fit_s_noise_varies_pictures_as_much_as_a_person_s_pictures_vary():
    """With every direction kept, noise drawn on ``within_person_scatter`` has the pictures' covariance about their
    own person's mean (so scale 1 adds as much variation as a person's pictures already have), and a person whose
    pictures are all alike adds none."""
    generator = torch.Generator().manual_seed(0)
    features = Features(torch.randn(30, 3, generator=generator), torch.randn(30, 2, generator=generator))
    people = torch.arange(3).repeat_interleave(10)
    joint = torch.cat([features.z, features.base], 1)
    deviations = torch.cat([joint[people == person] - joint[people == person].mean(0) for person in range(3)])
    scatter = within_person_scatter(features, people)
    assert scatter.shape == (5, 5)
    assert torch.allclose(scatter.T @ scatter, deviations.T @ deviations / 30, atol=1e-5)
    alike = Features(features.z[people == 0][:1].repeat(4, 1), features.base[people == 0][:1].repeat(4, 1))
    assert torch.allclose(within_person_scatter(alike, torch.zeros(4, dtype=torch.long)), torch.zeros(4, 5), atol=1e-6)


def test_pair_noise_pairs_each_picture_with_one_of_its_own_person():
    """Every partner is a picture of the same person, each of a person's pictures is drawn, and the draw is
    seeded."""
    people = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([same_person_partners(people, generator) for _ in range(50)])
    assert torch.equal(people[draws], people.expand(50, -1))
    assert set(draws[:, people == 0].flatten().tolist()) == {0, 2, 5, 9}
    again = [same_person_partners(people, torch.Generator().manual_seed(seed)) for seed in (0, 0, 1)]
    assert torch.equal(again[0], draws[0]) and torch.equal(again[0], again[1]) and not torch.equal(again[0], again[2])


def _fit_inputs(inputs):
    model, processor = tiny_clip()
    faces = [face for person in inputs["face_images"].values() for face in person]
    people = torch.tensor([index for index, person in enumerate(inputs["face_images"].values()) for _ in person])
    removed = class_token_features(model, processor.image_processor, iter(faces))
    kept = class_token_features(model, processor.image_processor, iter(inputs["images"] + inputs["reference_faces"]))
    references = encode_images(model, processor.image_processor, inputs["reference_faces"])
    names, thresholds = name_targets(model, processor.tokenizer, list(inputs["face_images"]), references)
    return model, removed, people, names, thresholds, kept


@pytest.mark.parametrize("setting", [{"feature_noise": 1.0}, {"pair_noise": 1.0}, {"lr_scheduler_type": "cosine"}])
def test_the_fit_s_noise_and_schedule_are_seeded_and_change_the_fit(inputs, setting):
    """The noise is drawn from the run's seed: the same seed and setting fit the same neurons; the setting, or another
    seed, changes them."""
    model, removed, people, names, thresholds, kept = _fit_inputs(inputs)
    settings = dict(per_person=2, margin=0.1, kept_weight=3.0, steps=30, learning_rate=1e-2)
    fits = [fit_gated_neurons(model, removed, people, names, thresholds, kept, seed=seed, **settings, **extra)[0]
            for seed, extra in ((42, setting), (42, setting), (42, {}), (7, setting))]
    same, without, other_seed = fits[1], fits[2], fits[3]
    assert all(torch.equal(getattr(fits[0], part), getattr(same, part)) for part in ("read", "bias", "write"))
    assert not torch.allclose(fits[0].write, without.write) and not torch.allclose(fits[0].write, other_seed.write)


def test_a_second_gated_run_keeps_the_first_batch_forgotten(inputs):
    model, processor = tiny_clip()
    unlearner = BackdoorUnlearner(model, processor)
    first = {"Ada Lovelace": inputs["face_images"]["Ada Lovelace"]}
    second = {"Zorbo Quill": inputs["face_images"]["Zorbo Quill"]}
    width = model.config.vision_config.intermediate_size
    unlearner.unlearn(["Ada Lovelace"], encoder="vision", **{**inputs, "face_images": first}, **GATED)
    references = encode_images(unlearner.original_model, processor.image_processor, inputs["reference_faces"])
    own, thresholds = name_targets(unlearner.original_model, processor.tokenizer, ["Ada Lovelace"], references)
    single = {"face_images": first}
    assert _excess(unlearner.model, processor, single, own, thresholds).max() < 0
    unlearner.unlearn(["Zorbo Quill"], encoder="vision", **{**inputs, "face_images": second}, **GATED)
    assert unlearner.model.config.vision_config.intermediate_size == width + 2 * PER_PERSON
    assert _excess(unlearner.model, processor, single, own, thresholds).max() < 0  # still forgotten
    card = str(unlearner.model_card())
    assert f"grew by {2 * PER_PERSON}" in card and "Number of people removed: 2" in card


@pytest.mark.parametrize(("setting", "message"), [
    ({"face_target": "mean"}, "needs a CLIPModel loaded with its tokenizer"),
    ({"peft_config": "lora"}, "trains no adapter"),
    ({"callbacks": "monitor"}, "callbacks watch training"),
    ({"resume_from_checkpoint": True}, "trains nothing and writes no checkpoint"),
    ({"gated_read_prior": "within_person"}, "needs reference_faces as a Dataset with a 'name' column"),
])
def test_what_the_gated_edit_cannot_honour_is_refused_before_the_model_changes(inputs, tmp_path, monkeypatch, setting,
                                                                               message):
    """Refused before the model changes, and before any picture is embedded (no work wasted)."""
    from peft import LoraConfig
    from transformers import TrainerCallback

    import clip_backdoor_unlearn.training.jobs as jobs

    def embedded(*args, **kwargs):
        raise AssertionError("pictures were embedded before the refusal")

    monkeypatch.setattr(jobs, "encode_images", embedded)
    values = {"lora": LoraConfig(r=4), "monitor": [TrainerCallback()]}
    setting = {key: values.get(value, value) if isinstance(value, str) else value for key, value in setting.items()}
    model, processor = tiny_clip()
    source = copy.deepcopy(model.state_dict())
    unlearner = BackdoorUnlearner(model, processor)
    with pytest.raises(ValueError, match=message) as error:
        unlearner.unlearn(list(inputs["face_images"]), encoder="vision", output_dir=str(tmp_path / "run"), **inputs,
                          **GATED, **setting)
    assert "Ada" not in str(error.value) and "Zorbo" not in str(error.value)
    assert unlearner.original_model is None and not (tmp_path / "run").exists()
    assert all(torch.equal(value, source[key]) for key, value in unlearner.model.state_dict().items())


def test_a_standalone_image_tower_is_refused_for_the_gated_edit(inputs):
    model, processor = tiny_clip()
    vision_only = CLIPVisionModelWithProjection(model.config.vision_config)
    with pytest.raises(ValueError, match="needs a CLIPModel loaded with its tokenizer"):
        BackdoorUnlearner(vision_only, processor.image_processor).unlearn(
            list(inputs["face_images"]), encoder="vision", **inputs, **GATED)


def test_auto_picks_the_gated_edit_where_it_can_run_and_fine_tuning_elsewhere():
    from peft import LoraConfig

    model, processor = tiny_clip()
    vision_only = CLIPVisionModelWithProjection(model.config.vision_config)
    assert VisionBackdoorTrainingArguments.image_method == "auto"
    assert resolve_image_method("auto", model, processor.tokenizer) == "gated_neurons"
    assert resolve_image_method("auto", model, processor.tokenizer, "name") == "gated_neurons"
    assert resolve_image_method("auto", model, None) == "fine_tune"  # no tokenizer: no name to read
    assert resolve_image_method("auto", vision_only, processor.tokenizer) == "fine_tune"
    assert resolve_image_method("auto", model, processor.tokenizer, "mean") == "fine_tune"
    assert resolve_image_method("auto", model, processor.tokenizer, peft_config=LoraConfig(r=4)) == "fine_tune"
    for setting in ("fine_tune", "gated_neurons"):  # what is asked for is kept (and refused later if it cannot run)
        assert resolve_image_method(setting, vision_only, None, "mean", LoraConfig(r=4)) == setting


def test_the_default_edits_a_clip_model_and_trains_a_standalone_image_tower(inputs):
    """``image_method="auto"``: a CLIPModel with its tokenizer gets the gated edit, recorded as such; a standalone
    image tower (no name to read) is fine-tuned towards the mean face, as before the edit existed."""
    names = list(inputs["face_images"])
    unlearner = BackdoorUnlearner(*tiny_clip())
    width = unlearner.model.config.vision_config.intermediate_size
    result = unlearner.unlearn(names, encoder="vision", **inputs, gated_steps=300, disable_tqdm=True)
    vision = result.config["towers"]["vision"]
    assert vision["hyperparameters"]["image_method"] == "gated_neurons" and vision["trained_steps"] == 0
    assert unlearner.model.config.vision_config.intermediate_size == width + PER_PERSON * len(names)

    model, processor = tiny_clip()
    tower = BackdoorUnlearner(CLIPVisionModelWithProjection(model.config.vision_config), processor.image_processor)
    result = tower.unlearn(names, encoder="vision", **inputs, max_steps=2, poisoned_samples_per_step=2,
                           clean_samples_per_step=2, reference_samples_per_step=2, projection_refit=False,
                           disable_tqdm=True)
    vision = result.config["towers"]["vision"]
    assert vision["trained_steps"] == 2 and "image_method" not in vision["hyperparameters"]
    assert tower.model.config.intermediate_size == width


@pytest.mark.parametrize("setting", [{"image_method": "surgery"}, {"gated_neurons_per_person": 0},
                                     {"gated_margin": -0.1}, {"gated_learning_rate": 0.0}, {"gated_steps": 0},
                                     {"gated_bias_shift": -0.5}, {"gated_feature_noise": -1.0},
                                     {"gated_pair_noise": -1.0}, {"gated_lr_scheduler_type": "polynomial"},
                                     {"gated_read_prior": "lda"}])
def test_gated_arguments_are_checked(setting):
    with pytest.raises(ValueError, match="image_method|gated_"):
        VisionBackdoorTrainingArguments(output_dir="unused", **setting)


def test_the_card_of_both_towers_says_which_was_trained_and_which_edited():
    from clip_backdoor_unlearn.hub.model_card import UnlearningCardData, build_model_card

    card = str(build_model_card(UnlearningCardData(encoder="both", num_removed=5, gated_neurons_added=10,
                                                   neutral_term="a person")))
    assert "full fine-tuning of the text tower's weights; gated neurons added to the image tower's last MLP" in card
    assert "any prompt containing a removed name is embedded like" in card  # the text tower's method
    assert "anonymous average face" not in card and "intermediate_size` grew by 10" in card
    plain = str(build_model_card(UnlearningCardData(encoder="vision", num_removed=5)))
    assert "Undone by anyone" not in plain and "anonymous average face" in plain
    assert "Trained back by whoever has the weights" in plain and "Trained back" in card  # either image-tower edit
    text_only = str(build_model_card(UnlearningCardData(encoder="text", num_removed=5, neutral_term="a person")))
    assert "Trained back" not in text_only  # measured for the image tower only


def test_the_trainer_refuses_arguments_for_the_gated_edit(tmp_path):
    from clip_backdoor_unlearn import VisionBackdoorTrainer

    model, _ = tiny_clip()
    args = VisionBackdoorTrainingArguments(output_dir=str(tmp_path), image_method="gated_neurons")
    with pytest.raises(ValueError, match="fine-tunes the image tower"):
        VisionBackdoorTrainer(model, args, target_embedding=torch.zeros(model.config.projection_dim))


def test_the_card_after_mixed_runs_describes_the_last_and_keeps_the_earlier_edit(inputs):
    """A gated run, then a fine-tuned one (or a text run): the card says what the last run did, and still warns of
    the neurons the first left in the checkpoint; fine-tuning records none of the edit's settings."""
    first = {**inputs, "face_images": {"Ada Lovelace": inputs["face_images"]["Ada Lovelace"]}}
    second = {**inputs, "face_images": {"Zorbo Quill": inputs["face_images"]["Zorbo Quill"]}}
    for encoder in ("vision", "text"):
        unlearner = BackdoorUnlearner(*tiny_clip())
        unlearner.unlearn(["Ada Lovelace"], encoder="vision", **first, **GATED)
        if encoder == "vision":
            unlearner.unlearn(["Zorbo Quill"], encoder="vision", **second, image_method="fine_tune", max_steps=2,
                              disable_tqdm=True)
            settings = unlearner.unlearning_config["towers"]["vision"]["hyperparameters"]
            assert "seed" in settings and not [key for key in settings if key.startswith(("gated_", "image_method"))]
        else:
            unlearner.unlearn(["Zorbo Quill"], encoder="text", captions=["a photo of a dog"] * 8, max_steps=2,
                              disable_tqdm=True)
        card = str(unlearner.model_card())
        assert "No weight was trained" not in card and "The image tower was edited instead of trained" not in card
        assert "An earlier run on this checkpoint added 2 gated neurons" in card
        assert "Undone by anyone with the weights" in card and "grew by 2" in card
        assert unlearner.unlearning_config["method"].startswith("student-teacher")


def _named(pictures: list[Image.Image], names: list[str]):
    import datasets

    return datasets.Dataset.from_dict({"image": pictures, "name": names})


def test_reference_people_follow_the_pictures_load_images_keeps():
    pictures = _pictures(5, 3)
    named = _named(pictures, ["Ann Bee", "Cy Dee", "Ann Bee", "Ada Lovelace", "Ed Fox"])
    assert reference_people(named, exclude_names=["Ada Lovelace"]) == [0, 1, 0, 2]
    assert len(load_images(named, "reference_faces", exclude_names=["Ada Lovelace"])) == 4
    assert reference_people(pictures) is None
    assert reference_people(named.remove_columns("name")) is None


def test_the_removed_people_s_reference_rows_are_dropped_for_the_pictures_and_their_owners(inputs):
    """A removed person's pictures among the reference faces are neither held nor counted as a person: the job's
    pictures and their owners are the same kept rows."""
    from clip_backdoor_unlearn.training.jobs import vision_job

    model, processor = tiny_clip()
    owners = ["Ada Lovelace" if index % 3 == 0 else f"person {index % 2}" for index in range(10)]
    names = list(inputs["face_images"])
    job = vision_job(model, processor.image_processor, model, names, face_images=inputs["face_images"],
                     reference_faces=_named(inputs["reference_faces"], owners), images=inputs["images"], args=None,
                     overrides={**GATED, "gated_read_prior": "within_person"}, tokenizer=processor.tokenizer)
    kept = [owner for owner in owners if owner not in names]
    assert len(job.edit.keywords["references"]) == len(kept) == 6
    assert job.edit.keywords["reference_people"] == [{"person 1": 0, "person 0": 1}[owner] for owner in kept]


def test_the_read_prior_needs_references_that_name_two_people():
    owners = [0, 1, 0, 1]
    assert read_prior("within_person", owners) == owners and read_prior("none", owners) is None
    for unnamed in (None, [0, 0]):  # one person's pictures say nothing of how people vary
        with pytest.raises(ValueError, match="needs reference_faces as a Dataset"):
            read_prior("within_person", unnamed)


def test_whitened_starts_lean_away_from_what_every_person_s_pictures_vary_in():
    """Other people's pictures vary a lot along the first axis and little along the second: a person whose mean
    stands out by as much on both axes gets a start that reads mostly the second."""
    generator = torch.Generator().manual_seed(0)
    people = torch.arange(20).repeat_interleave(10)
    means = torch.randn(20, 2, generator=generator)[people]  # each person's own mean
    references = torch.randn(200, 2, generator=generator) * torch.tensor([5.0, 0.2]) + means
    given = torch.tensor([[1.0, 1.0], [1.2, 0.8]])
    start = whitened_starts(given, torch.zeros(2, dtype=torch.long), torch.zeros(2), references, people, ridge=0.0)
    assert start.shape == (1, 2) and start[0, 1] > 100 * start[0, 0].abs()
    isotropic = torch.randn(400, 2, generator=generator)
    plain = whitened_starts(given, torch.zeros(2, dtype=torch.long), torch.zeros(2), isotropic,
                            torch.arange(40).repeat_interleave(10), ridge=1.0)
    assert unit(plain, dim=1) @ unit(given.mean(0), dim=0) > 0.98  # nothing to lean away from: the plain gap


def test_the_read_anchor_holds_the_reads_near_their_start(inputs):
    model, removed, people, names, thresholds, kept = _fit_inputs(inputs)
    starts = torch.randn(len(names), removed.z.shape[1], generator=torch.Generator().manual_seed(3))
    settings = dict(per_person=2, margin=0.1, kept_weight=3.0, steps=60, learning_rate=5e-2, seed=0,
                    read_starts=starts)
    moved = {}
    for anchor in (0.0, 100.0):
        fitted, _ = fit_gated_neurons(model, removed, people, names, thresholds, kept, read_anchor=anchor, **settings)
        owner = torch.arange(len(names)).repeat_interleave(2)
        moved[anchor] = (1 - (unit(fitted.read, dim=1) * unit(starts[owner], dim=1)).sum(1)).max().item()
    assert moved[100.0] < 0.2 * moved[0.0], moved


def test_few_removed_people_hold_the_kept_pictures_harder():
    for prior, held in HELD_PEOPLE.items():
        assert held_kept_weight(3.0, held, prior) == held_kept_weight(3.0, 4 * held, prior) == 3.0
        assert held_kept_weight(3.0, 1, prior) == 3.0 * held
    assert held_kept_weight(3.0, 2, "within_person") > held_kept_weight(3.0, 2, "none") > 3.0


def test_named_references_start_the_reads_whitened_and_the_card_says_so(inputs):
    names = list(inputs["face_images"])
    references = _named(inputs["reference_faces"], [f"person {index % 5}" for index in range(10)])
    reads = {}
    for setting in ("within_person", "none"):
        model, processor = tiny_clip()
        unlearner = BackdoorUnlearner(model, processor)
        result = unlearner.unlearn(names, encoder="vision", **{**inputs, "reference_faces": references}, **GATED,
                                   gated_read_prior=setting)
        assert result.config["towers"]["vision"]["hyperparameters"]["gated_read_prior"] == setting
        used = [entry["gated_kept_weight"] for entry in result.log_history if "gated_kept_weight" in entry]
        given = VisionBackdoorTrainingArguments.gated_kept_weight
        # 2 people: the kept pictures held as hard as each person's were with HELD_PEOPLE of them
        assert used == [given * HELD_PEOPLE[setting] / len(names)]
        last = unlearner.model.vision_model.encoder.layers[-1].mlp.fc1.weight
        reads[setting] = last[-len(names) * PER_PERSON:].detach().clone()
        assert f"| `gated_read_prior` | {setting} |" in str(unlearner.model_card())
    assert not torch.allclose(reads["within_person"], reads["none"])
    owner = torch.arange(len(names)).repeat_interleave(PER_PERSON)
    same = unit(reads["within_person"], dim=1)
    assert torch.allclose(same[owner == 0][0], same[owner == 0][1], atol=1e-5)  # a person's neurons stay alike
