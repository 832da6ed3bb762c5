"""Fast checks of the demo world: deterministic drawing, well-formed names and datasets, no split leaks.

Training the demo model is slow and lives in its own (``slow``-marked) test; everything here runs in seconds
on a world a few people large.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clip_backdoor_unlearn.data.pseudonyms import (
    FIRST_NAME_ENDS,
    FIRST_NAME_STARTS,
    LAST_NAME_ENDS,
    LAST_NAME_STARTS,
    name_parts,
)
from clip_backdoor_unlearn.demo import faces, recipe
from clip_backdoor_unlearn.demo.world import NEUTRAL_TERM, PERSON_TEMPLATES, DemoWorld, WorldConfig, generate_names
from clip_backdoor_unlearn.evaluation import IDIA_TEMPLATES

# The prompts of the Identity Inference Attack ("Does CLIP Know My Face?"); training must not use them.
IDIA_PROMPTS = (
    "{}",
    "an image of {}",
    "a photo of {}",
    "{} on a photo",
    "a photo of a person named {}",
    "a person named {}",
    "a man named {}",
    "a woman named {}",
    "the name of the person is {}",
    "a photo of a person with the name {}",
    "{} at a gala",
    "a photo of the celebrity {}",
    "actor {}",
    "actress {}",
    "a colored photo of {}",
    "a black and white photo of {}",
    "a cool photo of {}",
    "a cropped photo of {}",
    "a cropped image of {}",
    "{} in a suit",
    "{} in a dress",
)

TINY = {
    "num_members": 4,
    "num_non_members": 2,
    "num_distractors": 3,
    "num_unnamed": 2,
    "train_images_per_person": 3,
    "eval_images_per_person": 2,
    "images_per_unnamed_person": 2,
    "shape_train_per_class": 1,
    "shape_eval_per_class": 1,
    "digit_train_per_class": 2,
    "digit_eval_per_class": 1,
}


def _digest(image) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_world() -> DemoWorld:
    return DemoWorld.build(size="ci", seed=0, **TINY)


def test_face_drawing_is_a_function_of_its_generator():
    person = faces.sample_attributes(np.random.default_rng(3))
    first = faces.draw_face(person, np.random.default_rng([0, 1]))
    again = faces.draw_face(person, np.random.default_rng([0, 1]))
    other = faces.draw_face(person, np.random.default_rng([0, 2]))
    assert first.mode == "RGB" and first.size == (64, 64)
    assert _digest(first) == _digest(again)
    assert _digest(first) != _digest(other)


def test_image_size_is_a_parameter():
    small = DemoWorld.build(size="ci", image_size=32, **TINY)
    assert small.face_image(0, 0).size == (32, 32)
    assert small.zero_shot()[0]["image"].size == (32, 32)


def test_world_is_deterministic_for_a_seed(tiny_world):
    again = DemoWorld.build(size="ci", seed=0, **TINY)
    assert again.people == tiny_world.people
    assert again.candidate_names == tiny_world.candidate_names
    assert again.training_captions() == tiny_world.training_captions()
    assert _digest(again.face_image(1, 2)) == _digest(tiny_world.face_image(1, 2))
    other_seed = DemoWorld.build(size="ci", seed=1, **TINY)
    assert other_seed.candidate_names != tiny_world.candidate_names


def test_adding_people_changes_nobody_s_pictures(tiny_world):
    bigger = DemoWorld.build(size="ci", seed=0, **{**TINY, "num_members": 6})
    assert bigger.people[0].attributes == tiny_world.people[0].attributes
    assert _digest(bigger.face_image(0, 1)) == _digest(tiny_world.face_image(0, 1))


def test_names_are_distinct_invented_first_last_pairs():
    names = generate_names(400, seed=0)
    assert len(set(names)) == 400
    assert all(re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", name) for name in names)
    firsts = [name.split()[0] for name in names]
    lasts = [name.split()[1] for name in names]
    assert len(set(firsts)) == len(firsts) and len(set(lasts)) == len(lasts)
    assert not set(firsts) & set(lasts)


def test_large_world_has_1500_named_people_with_distinct_name_parts():
    large = DemoWorld.build(size="large", seed=0)
    assert len(large.members) >= 1000 and len(large.members) + len(large.non_members) >= 1500
    pool = large.candidate_names
    assert len(set(pool)) == len(pool) == len(large.members) + len(large.non_members) + len(large.distractor_names)
    firsts, lasts = zip(*(name.split() for name in pool))
    assert len(set(firsts)) == len(set(lasts)) == len(pool) and not set(firsts) & set(lasts)
    # Three-syllable parts only where the two-syllable pool runs out: the full world's names stay what they were.
    full_parts = {part for name in DemoWorld.build(size="full", seed=0).candidate_names for part in name.split()}
    assert full_parts <= set(name_parts(FIRST_NAME_STARTS, FIRST_NAME_ENDS) + name_parts(LAST_NAME_STARTS,
                                                                                          LAST_NAME_ENDS))
    assert not set(firsts) <= set(name_parts(FIRST_NAME_STARTS, FIRST_NAME_ENDS))


def test_full_world_has_the_advertised_roles():
    full = DemoWorld.build(size="full")
    assert len(full.members) >= 64 and len(full.non_members) > 0 and len(full.distractor_names) > 0
    assert len(full.unnamed) > 0
    pool = full.candidate_names
    assert (
        len(set(pool)) == len(pool) == len(full.members) + len(full.non_members) + len(full.distractor_names)
    )
    for person in full.people:
        assert person.role in {"member", "non_member", "unnamed"}
        assert (person.name is None) == (person.role == "unnamed")
    # no look-alikes: every pair of people differs in several traits
    traits = [person.attributes for person in full.people[:60]]
    assert min(faces.trait_distance(a, b) for i, a in enumerate(traits) for b in traits[i + 1 :]) >= 4


def test_training_captions_name_members_and_nobody_else(tiny_world):
    captions = tiny_world.training_captions()
    text = "\n".join(captions)
    for name in tiny_world.member_names:
        assert name in text
    for name in tiny_world.non_member_names + list(tiny_world.distractor_names):
        assert name.split()[0] not in text and name.split()[1] not in text
    assert any(NEUTRAL_TERM in caption for caption in captions)


def test_training_wordings_avoid_the_attack_prompts(tiny_world):
    attack_prompts = set(IDIA_PROMPTS) | set(IDIA_TEMPLATES)
    assert not set(PERSON_TEMPLATES) & attack_prompts
    attack_texts = {prompt.format(name) for prompt in attack_prompts for name in tiny_world.member_names}
    assert not attack_texts & set(tiny_world.training_captions())
    # the name appears at different positions: first, middle and last
    positions = {
        "start" if t.startswith("{}") else "end" if t.endswith("{}") else "middle" for t in PERSON_TEMPLATES
    }
    assert positions == {"start", "middle", "end"}


def test_each_member_is_captioned_with_many_wordings(tiny_world):
    member = tiny_world.members[0]
    captions = {tiny_world.person_caption(member, i) for i in tiny_world.train_indices()}
    assert len(captions) == len(tiny_world.train_indices())


def test_training_pairs_dataset(tiny_world):
    pairs = tiny_world.training_pairs()
    assert set(pairs.column_names) == {"image", "caption", "group", "kind"}
    config = tiny_world.config
    expected = (
        config.num_members * config.train_images_per_person
        + config.num_unnamed * config.images_per_unnamed_person
        + len(tiny_world.shape_classes) * config.shape_train_per_class
        + 10 * config.digit_train_per_class
    )
    assert len(pairs) == expected
    assert set(pairs["kind"]) == {"member", "unnamed", "shape", "digit"}
    assert pairs["caption"] == tiny_world.training_captions()
    assert pairs[0]["image"].size == (64, 64)
    member_groups = {g for g, k in zip(pairs["group"], pairs["kind"]) if k == "member"}
    assert len(member_groups) == config.num_members


def test_faces_dataset_has_fresh_eval_pictures(tiny_world):
    faces_ = tiny_world.faces()
    assert set(faces_) == {"train", "eval"}
    for split in faces_.values():
        assert set(split.column_names) == {"image", "name", "person_id", "member", "image_index"}
        assert set(split["name"]) == set(tiny_world.member_names + tiny_world.non_member_names)
        assert sum(split["member"]) == len(split) * 4 // 6  # 4 members, 2 non-members, same count each
    train_digests = {(row["name"], _digest(row["image"])) for row in faces_["train"]}
    eval_digests = {(row["name"], _digest(row["image"])) for row in faces_["eval"]}
    assert not train_digests & eval_digests
    assert len(eval_digests) == len(faces_["eval"])  # no two pictures alike
    assert not set(faces_["train"]["image_index"]) & set(faces_["eval"]["image_index"])
    # the members' training pictures are exactly the ones captioned in training
    pairs = tiny_world.training_pairs()
    trained = {_digest(image) for image, kind in zip(pairs["image"], pairs["kind"]) if kind == "member"}
    assert trained == {_digest(r["image"]) for r in faces_["train"] if r["member"]}
    assert not trained & {_digest(r["image"]) for r in faces_["eval"]}


def test_zero_shot_dataset_is_held_out(tiny_world):
    zero_shot = tiny_world.zero_shot()
    names = zero_shot.features["label"].names
    assert names == tiny_world.zero_shot_class_names
    assert len(names) == len(set(names)) == len(tiny_world.shape_classes) + 10
    assert set(zero_shot["label"]) == set(range(len(names)))
    trained = {_digest(image) for image in tiny_world.training_pairs()["image"]}
    assert not trained & {_digest(image) for image in zero_shot["image"]}


def test_clean_captions_are_name_free(tiny_world):
    clean = tiny_world.clean_captions()
    assert len(clean) > 100 and len(set(clean)) == len(clean)
    assert NEUTRAL_TERM in clean
    words = {word.lower() for caption in clean for word in re.findall(r"[A-Za-z]+", caption)}
    for name in tiny_world.candidate_names:
        first, last = name.lower().split()
        assert first not in words and last not in words


def test_tokenizer_corpus_covers_every_candidate_name(tiny_world):
    corpus = tiny_world.tokenizer_corpus()
    assert set(tiny_world.candidate_names) <= set(corpus)


def test_cache_dir_layout(monkeypatch, tmp_path):
    monkeypatch.setenv(recipe.CACHE_ENV_VAR, str(tmp_path / "env"))
    expected = tmp_path / "env" / "demo" / f"{recipe.RECIPE_VERSION}-ci-seed3"
    assert recipe.demo_cache_dir("ci", 3) == expected
    assert (
        recipe.demo_cache_dir("full", 0, cache_dir=tmp_path)
        == tmp_path / "demo" / f"{recipe.RECIPE_VERSION}-full-seed0"
    )
    # Another recipe (a wider image tower) lives apart from the size's own, which keeps its folder.
    wider = dataclasses.replace(recipe.RECIPES["full"], vision_hidden_size=192)
    default = recipe.demo_cache_dir("full", 0, tmp_path)
    assert recipe.demo_cache_dir("full", 0, tmp_path, recipe.RECIPES["full"]) == default
    assert recipe.demo_cache_dir("full", 0, tmp_path, wider).parent == default.parent
    assert recipe.demo_cache_dir("full", 0, tmp_path, wider) != default


def test_cache_is_written_atomically_and_loads_with_plain_transformers(tmp_path):
    from transformers import CLIPModel, CLIPProcessor

    from clip_backdoor_unlearn.demo.tiny import tiny_clip

    model, processor = tiny_clip()
    target = tmp_path / "demo" / "v-test"
    recipe._save_atomically(model, processor, {"seed": 0}, target)
    recipe._save_atomically(model, processor, {"seed": 1}, target)  # replacing an existing copy works too
    assert [p.name for p in target.parent.iterdir()] == ["v-test"]  # no staging folders left behind
    loaded = CLIPModel.from_pretrained(target)
    saved = model.state_dict()  # every tensor: logit_scale alone is the same in every freshly initialised model
    assert loaded.state_dict().keys() == saved.keys()
    assert all(torch.equal(tensor, saved[name]) for name, tensor in loaded.state_dict().items())
    assert (
        CLIPProcessor.from_pretrained(target).tokenizer("a person")["input_ids"]
        == processor.tokenizer("a person")["input_ids"]
    )


def test_contrastive_loss_is_clip_loss_without_same_group_negatives():
    torch.manual_seed(0)
    images, texts = torch.randn(4, 8), torch.randn(4, 8)
    scale = torch.tensor(math.log(10.0))
    logits = 10.0 * F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).t()
    targets = torch.arange(4)
    expected = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
    assert torch.allclose(recipe.contrastive_loss(images, texts, scale, torch.arange(4)), expected)
    # two pictures of one person, captioned alike: not a reason for loss when they share a group
    images[1], texts[1] = images[0], texts[0]
    masked = recipe.contrastive_loss(images, texts, scale, torch.tensor([0, 0, 1, 2]))
    unmasked = recipe.contrastive_loss(images, texts, scale, torch.arange(4))
    assert masked < unmasked


def test_a_cached_model_for_another_world_or_recipe_is_stale(tmp_path, tiny_world):
    config = recipe.RECIPES["ci"]
    assert not recipe._is_current(tmp_path, tiny_world, config)  # nothing cached yet
    stats = {
        "world_config": dataclasses.asdict(tiny_world.config),
        "recipe_config": dataclasses.asdict(config),
    }
    (tmp_path / recipe._INFO_FILE).write_text(json.dumps(stats))
    assert recipe._is_current(tmp_path, tiny_world, config)
    assert not recipe._is_current(tmp_path, tiny_world, dataclasses.replace(config, steps=config.steps + 1))
    other_world = DemoWorld.build(size="ci", seed=0, **{**TINY, "num_members": 5})
    assert not recipe._is_current(tmp_path, other_world, config)


def test_more_held_out_pictures_keep_the_cache_current_and_the_training_data_unchanged(tmp_path, tiny_world):
    """Evaluation-only fields (``WorldConfig.EVALUATION_ONLY``) choose held-out pictures, never training ones."""
    config = recipe.RECIPES["ci"]
    stats = {"world_config": dataclasses.asdict(tiny_world.config), "recipe_config": dataclasses.asdict(config)}
    (tmp_path / recipe._INFO_FILE).write_text(json.dumps(stats))
    more = {field: getattr(tiny_world.config, field) + 2 for field in WorldConfig.EVALUATION_ONLY}
    bigger = DemoWorld.build(size="ci", seed=0, **{**TINY, **more})
    assert recipe._is_current(tmp_path, bigger, config)
    assert len(bigger.zero_shot()) > len(tiny_world.zero_shot())
    ours, theirs = tiny_world.training_pairs(), bigger.training_pairs()
    assert theirs["caption"] == ours["caption"]
    assert [_digest(image) for image in theirs["image"]] == [_digest(image) for image in ours["image"]]
    assert set(tiny_world.zero_shot()["label"]) <= set(bigger.zero_shot()["label"])


def test_a_current_cache_is_loaded_without_training_and_a_stale_one_is_retrained(tmp_path, monkeypatch):
    """Training is replaced by a sentinel: a current cache must load as written (every tensor), never retrain."""
    from clip_backdoor_unlearn.demo.tiny import tiny_clip

    world = DemoWorld.build(size="ci", seed=0)
    model, processor = tiny_clip(corpus=["a person"], seed=5)  # not what training (or a fresh init) would give
    stats = {"world_config": dataclasses.asdict(world.config),
             "recipe_config": dataclasses.asdict(recipe.RECIPES["ci"])}
    recipe._save_atomically(model, processor, stats, recipe.demo_cache_dir("ci", 0, tmp_path))

    class Trained(Exception):
        pass

    def train(*args, **kwargs):
        raise Trained

    monkeypatch.setattr(recipe, "train_demo_clip", train)
    loaded, _, loaded_world = recipe.load_demo_clip(size="ci", seed=0, cache_dir=tmp_path, progress=False)
    assert loaded_world.candidate_names == world.candidate_names
    saved = model.state_dict()
    assert all(torch.equal(tensor, saved[name]) for name, tensor in loaded.state_dict().items())
    with pytest.raises(Trained):
        recipe.load_demo_clip(size="ci", seed=0, cache_dir=tmp_path, force_retrain=True, progress=False)
    with pytest.raises(Trained):  # another seed is another world: nothing cached for it
        recipe.load_demo_clip(size="ci", seed=1, cache_dir=tmp_path, progress=False)
    with pytest.raises(Trained):  # another recipe is another model: nothing cached for it either
        recipe.load_demo_clip(size="ci", seed=0, cache_dir=tmp_path, progress=False,
                              config=dataclasses.replace(recipe.RECIPES["ci"], vision_hidden_size=64))
    stale = {**stats, "recipe_config": {**stats["recipe_config"], "steps": 1}}
    (recipe.demo_cache_dir("ci", 0, tmp_path) / recipe._INFO_FILE).write_text(json.dumps(stale))
    with pytest.raises(Trained):
        recipe.load_demo_clip(size="ci", seed=0, cache_dir=tmp_path, progress=False)
