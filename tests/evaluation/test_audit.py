"""The audit command: a saved model + a folder of faces + a names file → the attack's table and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clip_backdoor_unlearn.cli import main
from clip_backdoor_unlearn.demo.tiny import tiny_clip
from clip_backdoor_unlearn.evaluation import identity_inference_attack
from clip_backdoor_unlearn.evaluation.audit import folder_to_name, load_faces, load_model, read_lines

POOL = ["Alma Brisk", "Caden Dorr", "Ivo Jansen", "Kara Lund", "Milo Nash"]
FOLDERS = {"Alma_Brisk": (220, 40, 40), "Caden Dorr": (40, 200, 60)}  # underscore or space, both work


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    model, processor = tiny_clip(POOL, seed=0)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    rng = np.random.default_rng(0)
    for folder, colour in FOLDERS.items():
        (root / "faces" / folder).mkdir(parents=True)
        for i in range(3):
            noise = rng.normal(0, 30, (40, 40, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "faces" / folder / f"{i}.png")
        (root / "faces" / folder / "notes.txt").write_text("not an image")
        (root / "faces" / folder / ".hidden.png").write_bytes(b"junk")
    (root / "names.txt").write_text(
        "# candidate pool\n" + "\n".join(POOL[:2]) + "\n\n" + "\n".join(POOL[2:]) + "\n"
    )
    return root


def _args(root: Path, *extra: str) -> list[str]:
    return [
        "audit",
        str(root / "model"),
        "--faces",
        str(root / "faces"),
        "--names",
        str(root / "names.txt"),
        *extra,
    ]


def test_cli_prints_table_and_writes_json_equal_to_the_library(setup, capsys):
    root = setup
    output = root / "result.json"
    assert main(_args(root, "--min-correct-prompts", "2", "--output", str(output), "--show-names")) == 0
    printed = capsys.readouterr().out
    assert "Alma Brisk" in printed and "correct prompts" in printed and "of 2 people" in printed

    written = json.loads(output.read_text())
    model, processor = load_model(root / "model", "cpu")
    expected = identity_inference_attack(
        model, processor, load_faces(root / "faces", POOL), POOL, min_correct_prompts=2
    ).to_dict()
    assert written == json.loads(json.dumps(expected))
    assert [person["name"] for person in written["people"]] == ["Alma Brisk", "Caden Dorr"]
    assert all(person["num_images"] == 3 for person in written["people"])
    assert (
        written["num_candidates"] == 5
        and written["min_correct_prompts"] == 2
        and len(written["templates"]) == 21
    )


def test_templates_file_and_removed_names(setup, capsys):
    root = setup
    (root / "templates.txt").write_text("a photo of {}\n{} outdoors\n")
    (root / "removed.txt").write_text("Alma Brisk\n")
    output = root / "custom.json"
    assert (
        main(
            _args(
                root,
                "--templates",
                str(root / "templates.txt"),
                "--removed",
                str(root / "removed.txt"),
                "--output",
                str(output),
            )
        )
        == 0
    )
    written = json.loads(output.read_text())
    assert written["templates"] == ["a photo of {}", "{} outdoors"]
    assert all(len(person["prompt_predictions"]) == 2 for person in written["people"])
    model, processor = load_model(root / "model", "cpu")
    expected = identity_inference_attack(model, processor, load_faces(root / "faces", POOL), POOL,
                                         templates=["a photo of {}", "{} outdoors"])
    assert written["tpr_removed"] == expected.tpr(["Alma Brisk"])
    assert written["tpr_others"] == expected.tpr(["Caden Dorr"])
    assert "TPR on removed names" in capsys.readouterr().out


def test_module_and_console_script_run(setup):
    root = setup
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    output = root / "subprocess.json"
    completed = subprocess.run(
        [sys.executable, "-m", "clip_backdoor_unlearn", *_args(root, "--output", str(output))],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(output.read_text())["num_candidates"] == 5
    script = Path(sys.executable).parent / "clip-backdoor-unlearn"  # pip install -e . puts it next to python
    assert script.exists(), "the console script is not installed: pip install -e ."
    completed = subprocess.run(
        [str(script), "audit", "--help"], capture_output=True, check=False, text=True, timeout=120
    )
    assert completed.returncode == 0 and "--min-correct-prompts" in completed.stdout


def test_bad_inputs_exit_with_status_2_and_no_traceback(setup, tmp_path, capsys):
    root = setup
    (tmp_path / "names.txt").write_text("Caden Dorr\nKara Lund\n")  # Alma Brisk missing from the pool
    args = [
        "audit",
        str(root / "model"),
        "--faces",
        str(root / "faces"),
        "--names",
        str(tmp_path / "names.txt"),
    ]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "1 person with images is not in candidate_names (indexes [0]" in error
    assert "Alma" not in error and "Traceback" not in error

    (tmp_path / "faces" / "Kara Lund").mkdir(parents=True)
    (tmp_path / "faces" / "Caden Dorr").mkdir()
    (tmp_path / "faces" / "Caden Dorr" / "x.png").write_bytes(
        (root / "faces" / "Caden Dorr" / "0.png").read_bytes()
    )
    assert (
        main(
            [
                "audit",
                str(root / "model"),
                "--faces",
                str(tmp_path / "faces"),
                "--names",
                str(tmp_path / "names.txt"),
            ]
        )
        == 2
    )
    assert "Sub-folder #1 (in sorted order)" in capsys.readouterr().err

    assert main(_args(root, "--min-correct-prompts", "30")) == 2
    assert "min_correct_prompts" in capsys.readouterr().err
    assert (
        main(
            [
                "audit",
                str(tmp_path / "missing"),
                "--faces",
                str(root / "faces"),
                "--names",
                str(root / "names.txt"),
            ]
        )
        == 2
    )
    with pytest.raises(SystemExit):
        main(["audit", str(root / "model")])  # --faces and --names are required


def test_folder_names_and_names_file(setup):
    assert folder_to_name("Jane_Doe", {"Jane Doe"}) == "Jane Doe"
    assert folder_to_name("snake_case_handle", {"snake_case_handle"}) == "snake_case_handle"
    assert read_lines(setup / "names.txt") == POOL
    faces = load_faces(setup / "faces", POOL)
    assert list(faces) == ["Alma Brisk", "Caden Dorr"]
    assert [len(v) for v in faces.values()] == [3, 3] and faces["Alma Brisk"][0].mode == "RGB"


def test_cli_names_nobody_by_default_and_keeps_an_existing_output(setup, capsys):
    root = setup
    assert main(_args(root)) == 0
    printed = capsys.readouterr().out
    assert not any(name in printed for name in POOL) and "#1" in printed
    before = (root / "names.txt").read_bytes()
    assert main(_args(root, "--output", str(root / "names.txt"))) == 2
    assert (root / "names.txt").read_bytes() == before
    assert not any(name in capsys.readouterr().err for name in POOL)

