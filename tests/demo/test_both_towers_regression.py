"""Regression for ``encoder="both"`` on the full demo world: why names map to pseudonyms, not to "a person".

With both towers edited, "a person" and the anonymous mean face are close: the removed people's pictures retrieve
the removed names as a group (all of them at "a person"), and what is left of each identity picks the right one.
Measured on the full demo world of seed 0, 5 of its members removed (the attack's pool as ``kept_names``; the
text settings of ``examples/unlearn.py``, ``DEMO_VISION_SETTINGS`` for the image tower): the image tower alone
leaves TPR 0.4; with the text tower mapping names to "a person" on top TPR is 1.0, with pseudonyms 0.0.

The image tower is trained once and both text variants start from it (``both_towers.py``). About 7 minutes on two
quiet cores (training the full demo CLIP, if not cached, another 5), so the module is marked ``regression`` as well
as ``slow`` and is left out of the default run: ``python -m pytest -m regression tests``. CI runs the same comparison
on a CI-sized world that shows it (``test_both_towers_mechanism.py``).
"""

from __future__ import annotations

import pytest

from clip_backdoor_unlearn.demo.recipe import demo_text_settings, load_demo_clip

from .both_towers import edit_image_tower, newly_found, text_on_top

pytestmark = [pytest.mark.slow, pytest.mark.regression, pytest.mark.usefixtures("single_thread")]

NUM_REMOVED = 5
# The script's text settings for `both` on a fine-tuned image tower (the whole text tower): the names' own rows, the
# text tower's settings alone, left 1 of the 5 found with pseudonyms at the stop and 3 after all 200 steps here.
TEXT_SETTINGS = demo_text_settings("full", NUM_REMOVED, image_method="fine_tune")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    model, processor, demo = load_demo_clip(size="full", seed=0, progress=False)  # the user's demo cache
    return edit_image_tower(model, processor, demo, NUM_REMOVED, str(tmp_path_factory.mktemp("vision")), seed=0)


def test_the_world_knows_its_members_and_the_image_tower_alone_leaves_some(world):
    demo, before = world["world"], world["before"]
    assert before.tpr(demo.member_names) >= 0.9 and before.tpr(demo.non_member_names) <= 0.05
    assert before.tpr(world["removed"]) == 1.0
    assert world["vision_only"].tpr(world["removed"]) < 1.0  # measured 0.4


def test_a_person_as_the_text_target_brings_the_removed_people_back(world, tmp_path):
    after = text_on_top(world, str(tmp_path), pseudonyms=False, seed=0, **TEXT_SETTINGS)
    assert after.tpr(world["removed"]) >= 0.8  # measured 1.0, above the image tower alone
    assert after.tpr(world["removed"]) > world["vision_only"].tpr(world["removed"])


def test_pseudonyms_forget_the_removed_and_find_nobody_the_image_tower_did_not(world, tmp_path):
    after = text_on_top(world, str(tmp_path), pseudonyms=True, seed=0, **TEXT_SETTINGS)
    assert after.tpr(world["removed"]) <= 0.1  # measured 0.0
    demo = world["world"]
    assert after.tpr(demo.non_member_names) <= world["vision_only"].tpr(demo.non_member_names)
    assert set(newly_found(world, after)) <= set(newly_found(world, world["vision_only"]))
