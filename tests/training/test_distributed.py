"""``accelerate launch`` with two CPU processes trains the model one process trains (CI-sized demo world).

``examples/unlearn.py`` runs twice as a subprocess with the same seed and flags: once as one process, once as two
(``--multi_gpu --num_processes 2``: torchrun-style processes, on the CPU with gloo here). Each optimisation step
sees the same global batch either way (``poisoned_samples_per_step`` is over all processes); the two processes
split it and average their gradients. ``--clean_samples_per_step 63`` is odd on purpose: the processes get 31
and 32 clean captions a step, and the utility loss must still weigh every caption alike.

What may differ is floating-point rounding: each process pads its own half of the batch, and the gradients are
summed in another order. Measured on this test's runs (relative L2 difference of the text tower's weights, over
the update ‖θ_1 − θ_before‖): 2 processes against 1: 0.08 %; 1 process on 1 thread against 2 threads: 0 %; 2
processes that each take the mean of their own clean captions (the utility weighting before the fix): 2.0 %; 2
processes that do not synchronise their gradients: 69 %. The tolerance below sits between the first and the third.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "unlearn.py"
# The whole text tower (the demo's recipe trains only the names' rows): every weight of the tower goes through DDP.
FLAGS = ["--demo_size", "ci", "--num_removed", "3", "--max_steps", "20", "--learning_rate", "1e-3",
         "--trainable_parameters", "tower",
         "--poisoned_samples_per_step", "64", "--clean_samples_per_step", "63", "--logging_steps", "10",
         "--disable_tqdm", "true", "--seed", "0"]
MAX_RELATIVE_WEIGHT_DIFFERENCE = 0.01  # ‖θ_1 − θ_2‖ / ‖θ_1 − θ_before‖ over the text tower
LAUNCH_TIMEOUT = 600


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(launcher_flags: list[str], output_dir: Path, cache: Path, hf_home: Path) -> str:
    """Run the example under ``accelerate launch`` from the repository root; returns its stdout."""
    from clip_backdoor_unlearn.demo.recipe import CACHE_ENV_VAR

    env = {key: value for key, value in os.environ.items() if not key.startswith("ACCELERATE_")}
    # HF_HOME: no accelerate default config of this machine (a GPU or FSDP setup) changes what is launched.
    env.update({CACHE_ENV_VAR: str(cache), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "HF_HOME": str(hf_home), "PYTHONUNBUFFERED": "1"})
    command = [sys.executable, "-m", "accelerate.commands.launch", *launcher_flags, "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", str(SCRIPT), *FLAGS,
               "--output_dir", str(output_dir)]
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert completed.returncode == 0, f"launch failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}"
    return completed.stdout


@pytest.fixture(scope="module")
def runs(demo_cache, tmp_path_factory):
    """The example as one process and as two, from the same cached demo CLIP."""
    root = tmp_path_factory.mktemp("distributed")
    outputs = {}
    for processes, flags in ((1, ["--num_processes", "1"]),
                             (2, ["--multi_gpu", "--num_processes", "2", "--main_process_port", str(_free_port())])):
        output_dir = root / f"processes-{processes}"
        stdout = _launch(flags, output_dir, demo_cache, root / "hf-home")
        outputs[processes] = {"dir": output_dir, "stdout": stdout,
                              "metrics": json.loads((output_dir / "unlearning_metrics.json").read_text())}
    return outputs


def test_two_processes_train_the_weights_one_process_trains(runs, demo_cache):
    from clip_backdoor_unlearn.demo.recipe import demo_cache_dir

    before = load_file(demo_cache_dir("ci", 0, demo_cache) / "model.safetensors")
    one = load_file(runs[1]["dir"] / "sanitized" / "model.safetensors")
    two = load_file(runs[2]["dir"] / "sanitized" / "model.safetensors")
    text = [name for name in before if name.startswith(("text_model.", "text_projection."))]
    update = torch.sqrt(sum((one[name] - before[name]).pow(2).sum() for name in text))
    difference = torch.sqrt(sum((one[name] - two[name]).pow(2).sum() for name in text))
    assert update > 0
    assert difference / update < MAX_RELATIVE_WEIGHT_DIFFERENCE
    vision = [name for name in before if not name.startswith(("text_model.", "text_projection."))]
    assert all(torch.equal(two[name], before[name]) for name in vision)  # the image tower is untouched


def test_two_processes_forget_the_same_people(runs):
    one, two = runs[1]["metrics"], runs[2]["metrics"]
    for metrics in (one, two):
        assert metrics["idia_tpr_removed_before"] == 1.0
        assert metrics["idia_tpr_removed_after"] <= 0.2
    assert two["idia_tpr_removed_after"] == one["idia_tpr_removed_after"]
    assert abs(two["idia_collateral_lost"] - one["idia_collateral_lost"]) <= 1
    assert two["zero_shot_accuracy_after"] == pytest.approx(one["zero_shot_accuracy_after"], abs=0.02)


def test_two_processes_evaluate_print_and_save_once(runs):
    stdout = runs[2]["stdout"]
    assert stdout.count("sanitized checkpoint written to") == 1
    assert stdout.count("IDIA TPR on removed people") == 1
    assert stdout.count("members detected before") == 1
