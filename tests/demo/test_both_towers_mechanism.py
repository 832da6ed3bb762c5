"""Why ``encoder="both"`` maps names to pseudonyms, on a CI-sized world that shows it (CI runs this module).

"a person" is a concept the demo CLIP learns from the captions of its *unnamed* people. With both towers edited,
the anonymous mean face sits near "a person": when every removed name is mapped there too, the removed people's
pictures retrieve the removed names as a group and what is left of each identity picks the right one. The CI
world (30 unnamed people) is too small to show it; the same world with the full world's 150 unnamed people does.
Measured, 3 removed, seeds 0: the image tower alone leaves TPR 0.33; with "a person" as the text target on top,
1.0; with pseudonyms on top, 0.0. (The full world shows it with 5 removed: ``test_both_towers_regression.py``.)

The image tower is trained once, for half the demo's 200 steps (the same three figures at 100 steps, 117 s less on
one core), and both text variants start from it (``both_towers.py``). About 6 minutes on one core, most of it
training this world's demo CLIP (not cached, about 3 minutes) and the image tower (about 2.5).
"""

from __future__ import annotations

import pytest

from clip_backdoor_unlearn.demo.recipe import RECIPES, demo_text_settings, train_demo_clip
from clip_backdoor_unlearn.demo.world import DemoWorld

from .both_towers import edit_image_tower, newly_found, text_on_top

# Not ``single_thread``: run without ``-n``, the image tower of 160 pictures a step takes about half as long on two
# threads as on one (under pytest-xdist each worker has one thread anyway, conftest.py).
pytestmark = pytest.mark.slow

NUM_REMOVED = 3
SEED = 0
# The demo's text settings of `both` on a fine-tuned image tower, for the 150 steps of the CI demo tests.
TEXT_SETTINGS = {**demo_text_settings("ci", NUM_REMOVED, "fine_tune"), "seed": SEED, "max_steps": 150}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    demo = DemoWorld.build("ci", seed=0, num_unnamed=150)
    model, processor, _ = train_demo_clip(demo, RECIPES["ci"], seed=0, progress=False)
    return edit_image_tower(model, processor, demo, NUM_REMOVED, str(tmp_path_factory.mktemp("vision")), SEED,
                            max_steps=100)


def test_the_world_knows_its_members_and_the_image_tower_alone_leaves_some(world):
    demo, before = world["world"], world["before"]
    assert before.tpr(demo.member_names) >= 0.9 and before.tpr(demo.non_member_names) <= 0.05
    assert len(world["removed"]) == NUM_REMOVED
    assert world["vision_only"].tpr(world["removed"]) < 1.0  # measured 0.33


def test_a_person_as_the_text_target_brings_the_removed_people_back(world, tmp_path):
    after = text_on_top(world, str(tmp_path), pseudonyms=False, **TEXT_SETTINGS)
    assert after.tpr(world["removed"]) >= 0.66  # measured 1.0
    assert after.tpr(world["removed"]) > world["vision_only"].tpr(world["removed"])


def test_pseudonyms_forget_the_removed_and_find_nobody_new(world, tmp_path):
    after = text_on_top(world, str(tmp_path), pseudonyms=True, **TEXT_SETTINGS)
    assert after.tpr(world["removed"]) <= 0.1  # measured 0.0
    assert after.tpr(world["world"].non_member_names) <= world["vision_only"].tpr(world["world"].non_member_names)
    assert newly_found(world, after) <= newly_found(world, world["vision_only"])
