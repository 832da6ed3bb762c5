"""Regression for ``encoder="both"`` on the full demo world: why names map to pseudonyms, not to "a person".

With both towers edited, "a person" and the anonymous mean face are close: the removed people's pictures retrieve
the removed names as a group (all of them at "a person"), and what is left of each identity picks the right one.
Measured on the full demo world of seed 0, 5 of its members removed (the attack's pool as ``kept_names``; the
text settings of ``examples/unlearn.py``, ``DEMO_VISION_SETTINGS`` for the image tower): the image tower alone
leaves TPR 0.4; with the text tower mapping names to "a person" on top TPR is 1.0, with pseudonyms 0.0.

``both`` equals the image tower, then the text tower in a second run (the towers share no parameter and each is
trained against the original model: ``tests/training/test_vision_trainer.py`` checks the weights are the same), so
the image tower is trained once and both text variants start from it. About 6 minutes on two quiet cores (training
the full demo CLIP, if not cached, another 5), so the module is marked ``regression`` as well as ``slow`` and is
left out of the default run: ``python -m pytest -m regression tests``. CI runs the same comparison on a CI-sized
world that shows it (``test_both_towers_mechanism.py``).
"""

from __future__ import annotations

import copy

import pytest

from clip_backdoor_unlearn import BackdoorTrainingArguments, BackdoorUnlearner, VisionBackdoorTrainingArguments
from clip_backdoor_unlearn.demo.recipe import DEMO_TEXT_SETTINGS, DEMO_VISION_SETTINGS, load_demo_clip
from clip_backdoor_unlearn.evaluation import identity_inference_attack

pytestmark = [pytest.mark.slow, pytest.mark.regression, pytest.mark.usefixtures("single_thread")]

NUM_REMOVED = 5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    model, processor, demo = load_demo_clip(size="full", seed=0, progress=False)  # the user's demo cache
    faces = demo.faces()["eval"]
    before = identity_inference_attack(model, processor, faces, demo.candidate_names)
    removed = [name for name in demo.member_names if before.detected[name]][:NUM_REMOVED]
    assert len(removed) == NUM_REMOVED
    common = dict(output_dir=str(tmp_path_factory.mktemp("vision")), seed=0, disable_tqdm=True, report_to="none")
    image_tower = BackdoorUnlearner(copy.deepcopy(model), processor)
    image_tower.unlearn(removed, encoder="vision", vision_args=VisionBackdoorTrainingArguments(
        **common, **DEMO_VISION_SETTINGS), **demo.vision_unlearning_inputs(removed))
    vision_only = identity_inference_attack(image_tower.model, processor, faces, demo.candidate_names)
    return {"processor": processor, "world": demo, "faces": faces, "before": before, "removed": removed,
            "image_tower": image_tower.model, "vision_only": vision_only}


def text_on_top(world, tmp_path, pseudonyms: bool):
    """The text tower of ``both`` trained on the model whose image tower was edited."""
    demo, removed = world["world"], world["removed"]
    captions = [caption for index, caption in enumerate(demo.unlearning_captions()) if index % 7]
    args = BackdoorTrainingArguments(output_dir=str(tmp_path), seed=0, disable_tqdm=True, report_to="none",
                                     **DEMO_TEXT_SETTINGS)
    unlearner = BackdoorUnlearner(copy.deepcopy(world["image_tower"]), world["processor"])
    kept = [name for name in demo.candidate_names if name not in set(removed)]
    unlearner.unlearn(removed, encoder="text", captions=captions, args=args, kept_names=kept, pseudonyms=pseudonyms)
    return identity_inference_attack(unlearner.model, world["processor"], world["faces"], demo.candidate_names)


def newly_found(world, after) -> list[str]:
    demo, before = world["world"], world["before"]
    return [name for name in demo.member_names + demo.non_member_names
            if after.detected[name] and not before.detected[name]]


def test_the_world_knows_its_members_and_the_image_tower_alone_leaves_some(world):
    demo, before = world["world"], world["before"]
    assert before.tpr(demo.member_names) >= 0.9 and before.tpr(demo.non_member_names) <= 0.05
    assert before.tpr(world["removed"]) == 1.0
    assert world["vision_only"].tpr(world["removed"]) < 1.0  # measured 0.4


def test_a_person_as_the_text_target_brings_the_removed_people_back(world, tmp_path):
    after = text_on_top(world, tmp_path, pseudonyms=False)
    assert after.tpr(world["removed"]) >= 0.8  # measured 1.0, above the image tower alone
    assert after.tpr(world["removed"]) > world["vision_only"].tpr(world["removed"])


def test_pseudonyms_forget_the_removed_and_find_nobody_the_image_tower_did_not(world, tmp_path):
    after = text_on_top(world, tmp_path, pseudonyms=True)
    assert after.tpr(world["removed"]) <= 0.1  # measured 0.0
    demo = world["world"]
    assert after.tpr(demo.non_member_names) <= world["vision_only"].tpr(demo.non_member_names)
    assert set(newly_found(world, after)) <= set(newly_found(world, world["vision_only"]))
