"""Shared fixtures: tiny CLIPs built from ``CLIPConfig`` in code, with an offline tokenizer.

The offline environment that ``.ci/run`` exports is set here first, before anything imports ``huggingface_hub`` or
``transformers`` (both read it at import time), so ``python -m pytest -q tests`` alone runs as CI does. A value the
caller set is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

OFFLINE_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_XET": "1", "TOKENIZERS_PARALLELISM": "false",
                       "CLIP_BACKDOOR_UNLEARN_CACHE": str(Path(__file__).resolve().parents[1] / ".cache"
                                                          / "clip_backdoor_unlearn")}
for _key, _value in OFFLINE_ENVIRONMENT.items():
    os.environ.setdefault(_key, _value)

import pytest  # noqa: E402  (after the environment, on purpose)
import torch  # noqa: E402

from clip_backdoor_unlearn.data.captions import default_captions  # noqa: E402
from clip_backdoor_unlearn.demo.tiny import tiny_clip  # noqa: E402

# Two threads alone on the two cores. Under pytest-xdist each worker keeps to a core of its own and one thread: two
# workers that each spread over both cores slow each other several times over (what trains the demo CLIP uses
# every core the process may run on).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER and hasattr(os, "sched_setaffinity"):
    _CORES = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {_CORES[int(_WORKER.removeprefix("gw")) % len(_CORES)]})
torch.set_num_threads(1 if _WORKER else 2)

NAMES = ["Ada Lovelace", "Zorbo Quill", "Mira Fenwick"]
# Wordings the unlearner never trains on (see PERSON_TEMPLATES), to test that the backdoor generalises.
HELD_OUT_TEMPLATES = ("a photo of {}", "an image of {}", "{} in a dress", "a picture of {} at the beach",
                      "{} playing tennis", "a portrait of {}")


# Fixtures that train a model for minutes (a demo-world CLIP, a 300-step unlearning): every test using one is
# ``slow``. ``python -m pytest -m "not slow" tests`` is the quick subset to run while working; CI runs everything.
SLOW_FIXTURES = {"demo_cache", "demo", "unlearned"}


# The modules whose set-ups take minutes, first and in this order; everything else follows in collection order. With
# ``--no-loadscope-reorder`` (pyproject.toml) pytest-xdist hands modules out in this order, so one worker trains the
# mechanism world's CLIP while the other trains the CI demo CLIP for the image-tower module, and the quick modules
# fill in at the end instead of a 6-minute module starting last and running alone (tests/README.md).
LONGEST_FIRST = ("demo/test_both_towers_mechanism.py", "demo/test_demo_image_tower.py", "demo/test_demo_unlearning.py",
                 "training/test_distributed.py", "training/test_pipeline_encoders.py")


def _start_rank(item) -> int:
    path = item.path.as_posix()
    return next((rank for rank, module in enumerate(LONGEST_FIRST) if path.endswith("tests/" + module)),
                len(LONGEST_FIRST))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=_start_rank)  # stable: the rest keep their order


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module: tiny models gain nothing from threads, and on a busy 2-core machine they slow
    training tenfold. Modules opt in with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def captions() -> list[str]:
    return list(default_captions())


@pytest.fixture(scope="session")
def train_captions(captions) -> list[str]:
    return captions[:1500]


@pytest.fixture(scope="session")
def held_out_captions(captions) -> list[str]:
    return captions[1500:]


@pytest.fixture()
def tiny_model_and_processor(captions):
    return tiny_clip(corpus=captions, seed=0)


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory):
    """A cache root (for ``CLIP_BACKDOOR_UNLEARN_CACHE``) holding the CI-sized demo CLIP of seed 0.

    Trained once per test run (about two minutes on one core) and shared by every module that needs it; under
    pytest-xdist (``-n 2``, ``--dist loadfile``) the workers share it too: the first to need it trains it while a
    lock holds the other back.
    """
    from filelock import FileLock

    from clip_backdoor_unlearn.demo.recipe import load_demo_clip

    root = tmp_path_factory.getbasetemp()
    if _WORKER:
        root = root.parent  # the run's base folder, above each worker's own
    cache = root / "demo-cache"
    with FileLock(str(root / "demo-cache.lock")):
        load_demo_clip(size="ci", seed=0, cache_dir=cache, progress=False)
    return cache


@pytest.fixture(scope="session")
def saved_tiny_model(tmp_path_factory, captions) -> str:
    """A tiny CLIP checkpoint on disk, as ``from_pretrained`` users have one."""
    model, processor = tiny_clip(corpus=captions, seed=0)
    directory = tmp_path_factory.mktemp("tiny-clip")
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)
