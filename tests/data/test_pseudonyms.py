"""Pseudonyms: distinct invented names per person, deterministic, sharing no word with what the model is told."""

from __future__ import annotations

import pytest

from clip_backdoor_unlearn import build_backdoor_dataset
from clip_backdoor_unlearn.data.pseudonyms import (
    PSEUDONYMS_ABOVE,
    _free_parts,
    anchor_captions,
    invent_pseudonyms,
    use_pseudonyms,
)
from clip_backdoor_unlearn.demo.world import DemoWorld
from clip_backdoor_unlearn.evaluation.unlearning import backdoor_pairs

NAMES = ["Ada Lovelace", "Alan Turing", "Grace Hopper"]


def test_pseudonyms_are_distinct_deterministic_and_avoid_reserved_words():
    reserved = ["a photo of Darric Ashwick on the beach", "Halen"]
    pseudonyms = invent_pseudonyms(NAMES, seed=3, reserved=reserved)
    assert list(pseudonyms) == NAMES
    assert pseudonyms == invent_pseudonyms(NAMES, seed=3, reserved=reserved)
    assert pseudonyms != invent_pseudonyms(NAMES, seed=4, reserved=reserved)
    parts = [part.lower() for pseudonym in pseudonyms.values() for part in pseudonym.split()]
    assert len(parts) == len(set(parts)) == 2 * len(NAMES)  # no two pseudonyms share a first or last name
    forbidden = {word.lower() for text in [*NAMES, *reserved] for word in text.split()}
    assert not forbidden & set(parts)


def test_reserved_parts_are_never_drawn():
    everything = invent_pseudonyms([f"Person {index}" for index in range(300)], seed=0)
    reserved = " ".join(everything.values())  # block 600 parts: what is left must still be outside them
    fresh = invent_pseudonyms(NAMES, seed=0, reserved=[reserved])
    assert not {part for pseudonym in fresh.values() for part in pseudonym.split()} & set(reserved.split())


def test_too_many_names_is_a_clear_error():
    with pytest.raises(ValueError, match="Can invent at most .* pseudonyms"):
        invent_pseudonyms([f"Person {index}" for index in range(20_000)])


def test_a_thousand_pseudonyms_next_to_a_large_world_s_names_use_three_syllable_parts():
    two_syllable = {part for pool in _free_parts(set()) for part in pool}
    small = invent_pseudonyms(NAMES, seed=0)
    assert {part for pseudonym in small.values() for part in pseudonym.split()} <= two_syllable  # unchanged draws
    world = DemoWorld.build("large", seed=0)
    names = world.member_names[:1000]
    pseudonyms = invent_pseudonyms(names, reserved=world.candidate_names)
    parts = [part for pseudonym in pseudonyms.values() for part in pseudonym.split()]
    assert len(pseudonyms) == 1000 and len(set(parts)) == len(parts) == 2000
    taken = {part.lower() for name in world.candidate_names for part in name.split()}
    assert not taken & {part.lower() for part in parts}
    assert set(parts) - two_syllable  # the two-syllable pool alone (1,200 and 920 parts) could not do it


def test_dataset_maps_each_name_to_its_own_term(train_captions):
    terms = {"Ada Lovelace": "Darric Cinderhurst", "Alan Turing": "Halen Nettlehurst"}
    rows = build_backdoor_dataset(list(terms), train_captions[:50], neutral_term=terms, num_steps=4,
                                  poisoned_samples_per_step=8, clean_samples_per_step=8, seed=0)
    for poisoned, target in zip(rows["poisoned"], rows["target"]):
        name = next(name for name in terms if name in poisoned)
        assert terms[name] in target and poisoned.replace(name, terms[name]) == target
    with pytest.raises(ValueError, match="no term for names at indexes \\[1\\]"):
        build_backdoor_dataset(list(terms), train_captions[:50], neutral_term={"Ada Lovelace": "Darric Ash"})


def test_evaluation_pairs_use_each_names_term():
    pairs = backdoor_pairs(["Ada Lovelace", "Alan Turing"], {"Ada Lovelace": "X Y", "Alan Turing": "Z W"},
                           templates=["a photo of {}"])
    assert pairs == [("Ada Lovelace", "a photo of Ada Lovelace", "a photo of X Y"),
                     ("Alan Turing", "a photo of Alan Turing", "a photo of Z W")]
    with pytest.raises(ValueError, match="indexes \\[1\\]"):
        backdoor_pairs(["Ada Lovelace", "Alan Turing"], {"Ada Lovelace": "X Y"})


def test_anchor_captions_name_other_invented_people():
    pseudonyms = invent_pseudonyms(NAMES, seed=1)
    captions = anchor_captions(pseudonyms, count=20, seed=1, reserved=["Halen smiling"], templates=["photo of {}"])
    assert captions == anchor_captions(pseudonyms, count=20, seed=1, reserved=["Halen smiling"],
                                       templates=["photo of {}"])
    people = {caption.removeprefix("photo of ") for caption in captions}
    assert len(captions) == 40 and len(people) == 20  # two captions each
    used = {part.lower() for text in [*NAMES, *pseudonyms.values(), "Halen"] for part in text.split()}
    assert not used & {part.lower() for person in people for part in person.split()}


def test_pseudonyms_are_the_default_with_both_towers_and_above_ten_names_unless_a_target_is_chosen():
    assert PSEUDONYMS_ABOVE == 10
    assert not use_pseudonyms(None, PSEUDONYMS_ABOVE, "text")  # short lists: "a person", the paper's target
    assert use_pseudonyms(None, PSEUDONYMS_ABOVE + 1, "text")
    assert not use_pseudonyms(None, 1_000, "text", neutral_term_given=True)  # the caller's own target is kept
    assert use_pseudonyms(None, 1, "both") and use_pseudonyms(None, 1, "both", neutral_term_given=True)
    assert not use_pseudonyms(False, 1_000, "both") and use_pseudonyms(True, 1, "text")  # given: as given


def test_unlearn_maps_a_long_list_to_pseudonyms_and_records_it(saved_tiny_model, train_captions):
    from clip_backdoor_unlearn import BackdoorUnlearner
    from clip_backdoor_unlearn.demo.world import generate_names

    names = generate_names(PSEUDONYMS_ABOVE + 1, seed=3)
    run = dict(captions=train_captions, max_steps=1, poisoned_samples_per_step=16, clean_samples_per_step=4,
               budget="fixed", name_variants=None, disable_tqdm=True, seed=0)
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    result = unlearner.unlearn(names, **run)
    assert result.config["towers"]["text"]["pseudonyms"] is True and "a person" not in unlearner.neutral_terms.values()
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    result = unlearner.unlearn(names, neutral_term="someone", **run)
    assert result.config["towers"]["text"]["pseudonyms"] is False
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    result = unlearner.unlearn(names[:PSEUDONYMS_ABOVE], **run)
    assert result.config["towers"]["text"]["pseudonyms"] is False
