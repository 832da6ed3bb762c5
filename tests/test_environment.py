"""``python -m pytest -q tests`` alone runs offline, as ``.ci/run`` does: conftest.py sets the environment first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest

from .conftest import OFFLINE_ENVIRONMENT

_INNER = "CLIP_BACKDOOR_UNLEARN_TEST_INNER"  # set only in the child pytest below


def test_the_hub_library_read_the_offline_environment():
    """huggingface_hub reads HF_HUB_OFFLINE when imported: set later, it would have no effect."""
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    assert huggingface_hub.constants.HF_HUB_DISABLE_XET is True
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    if os.environ.get(_INNER):
        assert os.environ["CLIP_BACKDOOR_UNLEARN_CACHE"] == os.environ[_INNER]


@pytest.mark.slow  # a second pytest process: about 10 s of imports on a quiet machine
def test_a_bare_pytest_gets_the_environment_and_keeps_the_caller_s_cache(tmp_path):
    """The child sees none of the offline variables except a cache dir of its own, which must survive."""
    environment = {key: value for key, value in os.environ.items() if key not in OFFLINE_ENVIRONMENT}
    mine = str(tmp_path / "mine")
    root = Path(__file__).resolve().parents[1]
    this_test = f"{Path(__file__).relative_to(root)}::test_the_hub_library_read_the_offline_environment"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", this_test], cwd=root,
                         env={**environment, "CLIP_BACKDOOR_UNLEARN_CACHE": mine, _INNER: mine},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
