"""The CI-sized demo CLIP of seed 0 with its world and the attack before unlearning, for the demo modules."""

from __future__ import annotations

import pytest

from clip_backdoor_unlearn.evaluation import identity_inference_attack


@pytest.fixture(scope="session")
def demo(demo_cache):
    from clip_backdoor_unlearn.demo.recipe import load_demo_clip

    cache = demo_cache  # trained once per test run in tests/conftest.py, shared by every module and worker
    model, processor, world = load_demo_clip(size="ci", seed=0, cache_dir=cache, progress=False)
    faces = world.faces()["eval"]
    before = identity_inference_attack(model, processor, faces, world.candidate_names)
    return {"model": model, "processor": processor, "world": world, "faces": faces, "before": before,
            "cache": cache}
