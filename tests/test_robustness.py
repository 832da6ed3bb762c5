"""Safe handling around ``unlearn``: bad input fails before training with nothing written, interrupted training
resumes to the same model, and the names never reach logs, progress bars, checkpoints or error messages."""

from __future__ import annotations

import io
import json
import logging
import shutil
import warnings
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch
import transformers

from clip_backdoor_unlearn import BackdoorUnlearner
from clip_backdoor_unlearn.data.variants import name_variants

from .test_unlearner import directory_digest

# Names no caption or tokenizer corpus contains, so any occurrence in an output is a leak.
SECRET = ["Quintavia Brambleworth", "Oswin Tarrowby"]
KEPT = ["Hester Brambleworth"]  # shares a surname with a removed person
SECRET_PARTS = {part.casefold() for name in SECRET for part in name.split()} | {"tarrowby's", "brambleworth,"}
# budget="fixed": with 8 poisoned captions a step the per-name budget would add steps; these tests count them.
RUN = dict(max_steps=4, learning_rate=1e-3, poisoned_samples_per_step=8, clean_samples_per_step=8, seed=0,
           logging_steps=1, save_strategy="steps", save_steps=2, budget="fixed")


def leaked(text: str) -> list[str]:
    folded = text.casefold()
    return sorted(part for part in SECRET_PARTS if part in folded)


@pytest.fixture(scope="module")
def recorded_run(saved_tiny_model, train_captions, tmp_path_factory):
    """An uninterrupted, checkpointed run with progress bars and INFO logs on, everything it prints recorded."""
    root = tmp_path_factory.mktemp("recorded")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    root_logger, library_logger = logging.getLogger(), transformers.logging.get_logger()
    levels = root_logger.level, transformers.logging.get_verbosity()
    root_logger.addHandler(handler)
    library_logger.addHandler(handler)
    root_logger.setLevel(logging.DEBUG)
    transformers.logging.set_verbosity_debug()
    try:
        with redirect_stdout(stream), redirect_stderr(stream), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
            result = unlearner.unlearn(SECRET, kept_names=KEPT, captions=train_captions[:300],
                                       output_dir=str(root / "out"), disable_tqdm=False, **RUN)
            unlearner.save_pretrained(root / "sanitized")
    finally:
        root_logger.removeHandler(handler)
        library_logger.removeHandler(handler)
        root_logger.setLevel(levels[0])
        transformers.logging.set_verbosity(levels[1])
    printed = stream.getvalue() + "\n".join(str(warning.message) for warning in caught)
    state = {key: value.clone() for key, value in unlearner.model.state_dict().items()}
    return {"root": root, "printed": printed, "warnings": caught, "result": result, "state": state}


def test_names_never_reach_logs_progress_bars_or_warnings(recorded_run):
    printed = recorded_run["printed"]
    assert "Running training" in printed and "it/s" in printed, "INFO logs and the progress bar were recorded"
    assert any("kept_names[0]" in str(w.message) for w in recorded_run["warnings"]), "the shared surname warned"
    assert leaked(printed) == []


def test_names_never_reach_checkpoints_or_the_saved_model(recorded_run):
    root = recorded_run["root"]
    files = [path for path in root.rglob("*") if path.is_file()]
    assert {"training_args.bin", "trainer_state.json", "optimizer.pt", "model.safetensors"} <= {p.name for p in files}
    assert (root / "out" / "checkpoint-2").is_dir() and (root / "sanitized" / "unlearning_config.json").is_file()
    for path in files:
        assert leaked(path.read_bytes().decode("latin-1")) == [], f"{path.relative_to(root)} holds a name"
    args = torch.load(root / "out" / "checkpoint-2" / "training_args.bin", weights_only=False)
    assert leaked(repr(vars(args))) == [] and args.neutral_term == "a person"


def test_the_config_records_the_variant_mode_and_count_only(recorded_run):
    config = recorded_run["result"].config
    text_tower = config["towers"]["text"]
    assert text_tower["name_variants"] == "auto" and config["num_removed_names"] == 2
    assert 10 <= text_tower["num_name_variants"] <= 2 * 15
    text = json.dumps(config)
    assert not any(variant in text for name in SECRET for variant in name_variants(name))


def _fresh_run(saved_tiny_model, train_captions, output_dir, **kwargs):
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unlearner.unlearn(SECRET, kept_names=KEPT, captions=train_captions[:300], output_dir=str(output_dir),
                          disable_tqdm=True, **{**RUN, **kwargs})
    return unlearner.model.state_dict()


def _assert_same_weights(state, expected):
    assert state.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(state[key], expected[key], rtol=1e-5, atol=1e-6)


def test_resuming_from_a_checkpoint_reaches_the_uninterrupted_result(recorded_run, saved_tiny_model, train_captions,
                                                                     tmp_path):
    checkpoint = recorded_run["root"] / "out" / "checkpoint-2"
    resumed = _fresh_run(saved_tiny_model, train_captions, tmp_path / "resumed", resume_from_checkpoint=checkpoint)
    _assert_same_weights(resumed, recorded_run["state"])
    state = json.loads((tmp_path / "resumed" / "checkpoint-4" / "trainer_state.json").read_text())
    rates = [entry["learning_rate"] for entry in state["log_history"] if "learning_rate" in entry]
    assert rates == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4]), "the step-decay schedule resumed where it stopped"


def test_resume_true_skips_a_checkpoint_whose_save_was_interrupted(recorded_run, saved_tiny_model, train_captions,
                                                                   tmp_path):
    output_dir = tmp_path / "out"
    shutil.copytree(recorded_run["root"] / "out", output_dir)
    (output_dir / "checkpoint-4" / "trainer_state.json").unlink()  # written last: its absence marks a cut save
    resumed = _fresh_run(saved_tiny_model, train_captions, output_dir, resume_from_checkpoint=True)
    _assert_same_weights(resumed, recorded_run["state"])


def _corrupt(recorded_run, tmp_path, file_name):
    target = tmp_path / "corrupt"
    shutil.copytree(recorded_run["root"] / "out" / "checkpoint-2", target)
    data = (target / file_name).read_bytes()
    (target / file_name).write_bytes(data[: len(data) // 2])
    return target


BAD_INPUTS = [
    ("blank name", dict(names=[SECRET[0], "  "]), ValueError, r"names\[1\] is empty"),
    ("duplicate", dict(names=[SECRET[0], SECRET[0].upper()]), ValueError, r"names\[1\] duplicates names\[0\]"),
    ("truncated", dict(names=["Zq" * 60]), ValueError, r"names\[0\] is \d+ tokens long"),
    ("neutral term is a name", dict(neutral_term=SECRET[0]), ValueError, "neutral_term contains"),
    ("kept and removed", dict(kept_names=[SECRET[1]]), ValueError, r"kept_names\[0\] is also being removed"),
    ("blank variant", dict(name_variants={SECRET[0]: [" "]}), ValueError, "variant 0 is empty"),
    ("variant of nobody", dict(name_variants={"Hester Brambleworth": ["Hetty"]}), ValueError, "not being removed"),
    ("bad variant mode", dict(name_variants="some"), ValueError, "name_variants must be"),
    ("missing checkpoint", dict(resume_from_checkpoint="missing"), FileNotFoundError, "does not exist"),
    ("nothing to resume", dict(resume_from_checkpoint=True), FileNotFoundError, "no complete checkpoint"),
    ("corrupt weights", dict(resume_from_checkpoint="model.safetensors"), OSError, "corrupt or truncated model"),
    ("corrupt optimizer", dict(resume_from_checkpoint="optimizer.pt"), OSError, "corrupt or truncated optimizer"),
    ("output is the source", dict(output_dir="source"), ValueError, "overwrite the model"),
]


@pytest.mark.parametrize("case,kwargs,error,message", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_fails_before_training_writes_nothing_and_names_nobody(
    case, kwargs, error, message, recorded_run, saved_tiny_model, train_captions, tmp_path
):
    kwargs = dict(kwargs)
    resume = kwargs.get("resume_from_checkpoint")
    if resume == "missing":
        kwargs["resume_from_checkpoint"] = tmp_path / "missing" / "checkpoint-2"
    elif isinstance(resume, str):
        kwargs["resume_from_checkpoint"] = _corrupt(recorded_run, tmp_path, resume)
    output_dir = saved_tiny_model if kwargs.pop("output_dir", None) == "source" else tmp_path / "out"
    names = kwargs.pop("names", SECRET)
    source_before = directory_digest(saved_tiny_model)
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    weights = {key: value.clone() for key, value in unlearner.model.state_dict().items()}
    with pytest.raises(error, match=message) as raised:
        unlearner.unlearn(names, captions=train_captions[:300], output_dir=str(output_dir),
                          **{**RUN, "max_steps": 2, **kwargs})
    assert leaked(str(raised.value)) == []
    assert not (tmp_path / "out").exists(), "nothing is written"
    assert directory_digest(saved_tiny_model) == source_before
    assert all(torch.equal(weights[key], value) for key, value in unlearner.model.state_dict().items())
    assert unlearner.original_model is None and unlearner.unlearning_config == {}


def test_variants_are_removed_only_when_asked(saved_tiny_model, train_captions):
    """On a tiny random tower (which already generalises between related strings): with variants, the surname alone,
    "Last, First" and a titled name move further toward the neutral term than without; the name itself either way.
    Measured: about 0.93 with variants against 0.89 without."""
    from .test_unlearner import sim_backdoor_to_teacher

    first, last = SECRET[0].split()
    similarity = {}
    for mode in (None, "auto"):
        unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
        # Every step on every caption (no stop rule, nothing held out): the measured figures are that run's.
        unlearner.unlearn(SECRET[:1], captions=train_captions, name_variants=mode, max_steps=40, learning_rate=3e-3,
                          poisoned_samples_per_step=16, clean_samples_per_step=16, seed=0, disable_tqdm=True,
                          logging_steps=40, early_stop_retrieved=None)
        assert sim_backdoor_to_teacher(unlearner, names=SECRET[:1]) > 0.9
        similarity[mode] = sim_backdoor_to_teacher(unlearner, names=[last, f"{last}, {first}", f"Dr. {SECRET[0]}"])
    assert similarity["auto"] > 0.9 and similarity["auto"] > similarity[None] + 0.02, similarity
