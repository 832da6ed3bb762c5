"""Why ``encoder="both"`` maps names to pseudonyms, on a CI-sized world that shows it (CI runs this module).

"a person" is a concept the demo CLIP learns from the captions of its *unnamed* people. With both towers edited,
the anonymous mean face sits near "a person": when every removed name is mapped there too, the removed people's
pictures retrieve the removed names as a group and what is left of each identity picks the right one. The CI
world (30 unnamed people) is too small to show it; the same world with the full world's 150 unnamed people does.
Measured, 3 removed, seeds 0: the image tower alone leaves TPR 0.33; with "a person" as the text target on top,
1.0; with pseudonyms on top, 0.0. (The full world shows it with 5 removed: ``test_both_towers_regression.py``.)

``both`` equals the image tower, then the text tower in a second run (``test_vision_trainer.py`` checks the
weights are the same), so the image tower is trained once and both text variants start from it. About 4 minutes on
two cores, most of it training this world's demo CLIP (not cached) and the image tower.
"""

from __future__ import annotations

import copy

import pytest

from clip_backdoor_unlearn import BackdoorTrainingArguments, BackdoorUnlearner, VisionBackdoorTrainingArguments
from clip_backdoor_unlearn.demo.recipe import DEMO_VISION_SETTINGS, RECIPES, train_demo_clip
from clip_backdoor_unlearn.demo.world import DemoWorld
from clip_backdoor_unlearn.evaluation import identity_inference_attack

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]

NUM_REMOVED = 3
SEED = 0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    demo = DemoWorld.build("ci", seed=0, num_unnamed=150)
    model, processor, _ = train_demo_clip(demo, RECIPES["ci"], seed=0, progress=False)
    faces = demo.faces()["eval"]
    before = identity_inference_attack(model, processor, faces, demo.candidate_names)
    removed = [name for name in demo.member_names if before.detected[name]][:NUM_REMOVED]
    common = dict(output_dir=str(tmp_path_factory.mktemp("vision")), seed=SEED, disable_tqdm=True, report_to="none")
    image_tower = BackdoorUnlearner(copy.deepcopy(model), processor)
    image_tower.unlearn(removed, encoder="vision", vision_args=VisionBackdoorTrainingArguments(
        **common, **DEMO_VISION_SETTINGS), **demo.vision_unlearning_inputs(removed))
    vision_only = identity_inference_attack(image_tower.model, processor, faces, demo.candidate_names)
    return {"processor": processor, "world": demo, "faces": faces, "before": before, "removed": removed,
            "image_tower": image_tower.model, "vision_only": vision_only}


def text_on_top(world, tmp_path, pseudonyms: bool):
    """The text tower of ``both`` (the settings of the CI demo tests) trained on the edited image tower."""
    demo, removed = world["world"], world["removed"]
    captions = [caption for index, caption in enumerate(demo.unlearning_captions()) if index % 7]
    args = BackdoorTrainingArguments(output_dir=str(tmp_path), seed=SEED, disable_tqdm=True, report_to="none",
                                     max_steps=150, learning_rate=1e-3, poisoned_samples_per_step=64,
                                     clean_samples_per_step=64)
    unlearner = BackdoorUnlearner(copy.deepcopy(world["image_tower"]), world["processor"])
    kept = [name for name in demo.candidate_names if name not in set(removed)]
    unlearner.unlearn(removed, encoder="text", captions=captions, args=args, kept_names=kept, pseudonyms=pseudonyms)
    return identity_inference_attack(unlearner.model, world["processor"], world["faces"], demo.candidate_names)


def newly_found(world, after) -> set[str]:
    demo, before = world["world"], world["before"]
    people = demo.member_names + demo.non_member_names
    return {name for name in people if after.detected[name] and not before.detected[name]}


def test_the_world_knows_its_members_and_the_image_tower_alone_leaves_some(world):
    demo, before = world["world"], world["before"]
    assert before.tpr(demo.member_names) >= 0.9 and before.tpr(demo.non_member_names) <= 0.05
    assert len(world["removed"]) == NUM_REMOVED
    assert world["vision_only"].tpr(world["removed"]) < 1.0  # measured 0.33


def test_a_person_as_the_text_target_brings_the_removed_people_back(world, tmp_path):
    after = text_on_top(world, tmp_path, pseudonyms=False)
    assert after.tpr(world["removed"]) >= 0.66  # measured 1.0
    assert after.tpr(world["removed"]) > world["vision_only"].tpr(world["removed"])


def test_pseudonyms_forget_the_removed_and_find_nobody_new(world, tmp_path):
    after = text_on_top(world, tmp_path, pseudonyms=True)
    assert after.tpr(world["removed"]) <= 0.1  # measured 0.0
    assert after.tpr(world["world"].non_member_names) <= world["vision_only"].tpr(world["world"].non_member_names)
    assert newly_found(world, after) <= newly_found(world, world["vision_only"])
