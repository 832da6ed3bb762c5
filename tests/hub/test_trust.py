"""Trust: nothing the user has is lost, nothing private leaves (fault injection and fuzzing with hypothesis).

Saving is fuzzed over pre-filled targets and crashed (a subprocess exits) or failed (an exception) at every step of
the swap; the name scan over random names × every form × every encoding; pushes go to the loopback Hub.
"""

from __future__ import annotations

import ast
import hashlib
import html
import json
import os
import pickle
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path
from urllib.parse import quote

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clip_backdoor_unlearn import BackdoorTrainingArguments, BackdoorUnlearner
from clip_backdoor_unlearn.data.captions import default_captions
from clip_backdoor_unlearn.hub import saving
from clip_backdoor_unlearn.hub.model_card import TEMPLATE_PATH
from clip_backdoor_unlearn.hub.privacy import MIN_SPACELESS, NameLeakError, Scanner, fold, redacting
from clip_backdoor_unlearn.hub.saving import MANIFEST_NAME, recover, write_atomically

from ..conftest import NAMES
from .conftest import TOKEN
from .test_hub import directory_items, name_hits

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "clip_backdoor_unlearn"
FAST = dict(max_steps=2, learning_rate=2e-3, poisoned_samples_per_step=4, clean_samples_per_step=4, seed=0,
            logging_steps=1, disable_tqdm=True, lr_milestones=[])
LONG_TOKEN = "hf_" + "x" * 34
pytestmark = pytest.mark.usefixtures("single_thread")
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TALLY = {"faults": 0, "targets": 0, "name_forms": 0, "files_lost": 0, "leaks": 0}


def digest(directory: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file (and "<dir>" for every folder) under ``directory``."""
    if not directory.exists():
        return {}
    if directory.is_file():
        return {"": hashlib.sha256(directory.read_bytes()).hexdigest()}
    return {path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            if path.is_file() else "<dir>" for path in sorted(directory.rglob("*"))}


def write_files(files: dict[str, bytes]):
    def write(directory: str) -> None:
        for relative, data in files.items():
            Path(directory, relative).parent.mkdir(parents=True, exist_ok=True)
            Path(directory, relative).write_bytes(data)
    return write


OLD = {"model.safetensors": b"old weights", "config.json": b"{}"}
NEW = {"model.safetensors": b"new weights", "config.json": b"{\"a\": 1}", "sub/extra.txt": b"x"}


# Saving: never over what the user has ----------------------------------------------------------------------------

@FUZZ
@given(st.dictionaries(st.sampled_from(["notes.txt", "checkpoint-2/optimizer.pt", "README.md", ".hidden",
                                        "model.safetensors", MANIFEST_NAME]), st.binary(max_size=64), min_size=1))
def test_a_folder_holding_other_files_is_refused_untouched(tmp_path, files):
    target = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
    write_files(files)(str(target))
    before = digest(target)
    with pytest.raises(FileExistsError, match="did not write") as error:
        write_atomically(target, write_files(NEW))
    assert digest(target) == before and str(target) not in str(error.value)
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}")) == []
    TALLY["targets"] += 1
    TALLY["files_lost"] += digest(target) != before


def test_an_edited_checkpoint_of_ours_is_foreign_and_ours_is_replaced(tmp_path):
    target = tmp_path / "out"
    write_atomically(target, write_files(OLD))
    write_atomically(target, write_files(NEW))  # ours, unedited: replaced
    assert {k: v for k, v in digest(target).items() if k != MANIFEST_NAME} == digest_of(NEW)
    (target / "config.json").write_text("edited by hand")
    with pytest.raises(FileExistsError):
        write_atomically(target, write_files(OLD))
    assert (target / "config.json").read_text() == "edited by hand"


def digest_of(files: dict[str, bytes]) -> dict[str, str]:
    out = {relative: hashlib.sha256(data).hexdigest() for relative, data in files.items()}
    out.update({parent.as_posix(): "<dir>" for relative in files for parent in Path(relative).parents
                if parent.as_posix() != "."})
    return out


@pytest.mark.parametrize("where", ["cwd", "empty cwd", "parent", "home", "file", "link"])
def test_protected_places_files_and_links_are_refused(tmp_path, monkeypatch, where):
    work = tmp_path / "work"
    (work / "project").mkdir(parents=True)
    (work / "project" / "notes.txt").write_text("mine")
    monkeypatch.chdir(work / "project")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (work / "empty").mkdir()
    if where == "empty cwd":
        monkeypatch.chdir(work / "empty")
    target = {"cwd": Path("."), "empty cwd": Path("."), "parent": work, "home": tmp_path / "home",
              "file": work / "project" / "notes.txt", "link": work / "link"}[where]
    if where == "link":
        (tmp_path / "elsewhere").mkdir()
        target.symlink_to(tmp_path / "elsewhere")  # an empty folder nobody protects: the link itself is refused
    before = digest(tmp_path)
    with pytest.raises(FileExistsError):
        write_atomically(target, write_files(NEW))
    assert digest(tmp_path) == before
    TALLY["targets"] += 1


STEPS = ["writing", "staged", "journaled", "moved_aside", "replaced", "unjournaled"]
CRASH = """
import os, sys
from pathlib import Path
from clip_backdoor_unlearn.hub import saving
step = sys.argv[2]
def hook(name):
    if name == step:
        os._exit(3)
saving._step = hook
def write(directory):
    Path(directory, "model.safetensors").write_bytes(b"new weights")
    Path(directory, "config.json").write_bytes(b'{"a": 1}')
    Path(directory, "sub").mkdir()
    Path(directory, "sub", "extra.txt").write_bytes(b"x")
    if step == "writing":
        os._exit(3)
saving.write_atomically(sys.argv[1], write)
"""


@pytest.mark.parametrize("existing", [True, False])
@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_leaves_the_old_or_the_new_checkpoint(tmp_path, step, existing):
    target = tmp_path / "out"
    if existing:
        write_atomically(target, write_files(OLD))
    old = digest(target)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", CRASH, str(target), step], env=env, capture_output=True)
    assert result.returncode in (0, 3), result.stderr.decode()
    if step == "moved_aside" and existing:
        # The path is empty now; the next save (no explicit recover) must first put a complete checkpoint back.
        seen = {}

        def look(directory):
            found = {k: v for k, v in digest(target).items() if k != MANIFEST_NAME}
            seen["complete"] = digest(target) == old or found == digest_of(NEW)
            write_files(NEW)(directory)

        write_atomically(target, look)
        assert seen["complete"] and [p.name for p in tmp_path.iterdir()] == ["out"]
        write_atomically(target, write_files(OLD))
        old = digest(target)
    recover(target)
    new = {k: v for k, v in digest(target).items() if k != MANIFEST_NAME}
    assert digest(target) == old or new == digest_of(NEW), step
    assert [p.name for p in tmp_path.iterdir()] == (["out"] if target.exists() else [])
    if target.exists() and digest(target) != old:
        write_atomically(target, write_files(OLD))  # what recover left is ours again: it can be replaced
    TALLY["faults"] += 1
    TALLY["files_lost"] += bool(old) and digest(target) == {}


@FUZZ
@given(st.sampled_from(STEPS), st.booleans())
def test_an_error_at_any_step_leaves_the_old_checkpoint_in_place(tmp_path, step, existing):
    target = tmp_path / f"e{len(list(tmp_path.iterdir()))}"
    if existing:
        write_atomically(target, write_files(OLD))
    old = digest(target)

    def fail(name):
        if name == step:
            raise OSError("disk full")

    write = write_files(NEW)
    if step == "writing":
        def write(directory):  # noqa: F811 - the failing variant
            raise OSError("disk full")
    original = saving._step
    saving._step = fail
    try:
        try:
            write_atomically(target, write)
        except OSError:
            pass
    finally:
        saving._step = original
    after = {k: v for k, v in digest(target).items() if k != MANIFEST_NAME}
    assert digest(target) == old or after == digest_of(NEW)
    recover(target)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{target.name}.")]
    TALLY["faults"] += 1
    TALLY["files_lost"] += bool(old) and digest(target) == {}


def test_the_demo_replaces_its_own_cache_written_before_manifests(tmp_path):
    from clip_backdoor_unlearn.demo import recipe
    from clip_backdoor_unlearn.demo.tiny import tiny_clip

    model, processor = tiny_clip()
    target = tmp_path / "demo" / "v-old"
    model.save_pretrained(target)  # an old cache: no manifest
    recipe._save_atomically(model, processor, {"seed": 1}, target)
    assert (target / MANIFEST_NAME).exists() and [p.name for p in target.parent.iterdir()] == ["v-old"]


# The name scan: every form a reader would recognise --------------------------------------------------------------

LETTERS = st.text(st.characters(categories=["Lu", "Ll"]), min_size=3, max_size=9)
CAPTIONS = " ".join(default_captions())


def transforms(text: str) -> list[str]:
    """``text`` in every case, Unicode form, escaping and separator; run together only when long enough to be
    told from chance (``privacy.MIN_SPACELESS``)."""
    joined = [text.replace(" ", "")] if len(fold(text).replace(" ", "")) >= MIN_SPACELESS else []
    return [*joined, text, text.upper(), text.lower(), text.title(), unicodedata.normalize("NFD", text),
            unicodedata.normalize("NFKC", text), json.dumps(text), json.dumps(text).upper(),
            json.dumps(text, ensure_ascii=False), html.escape(text), quote(text), f'"{text}"',
            "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text),  # full width
            text.replace(" ", "_"), text.replace(" ", "-"), text.replace(" ", ".")]


@FUZZ
@given(LETTERS, LETTERS)
def test_every_form_of_a_random_name_is_found(first, last):
    first, last = first.title(), last.title()
    name = f"{first} {last}"
    scanner = Scanner([name])
    assume(not scanner.name_in(CAPTIONS[:20000]))
    forms = [name, f"{last}, {first}", f"{first[0]}. {last}", f"{first} {last[0]}.", *scanner_variants(name)]
    for form in forms:
        for text in transforms(form):
            found = scanner.name_in(f"notes: {text} end")
            TALLY["name_forms"] += 1
            TALLY["leaks"] += not found
            assert found, (form, text)


def scanner_variants(name):
    from clip_backdoor_unlearn.data.variants import name_variants

    return [variant for variant in name_variants(name) if " " in variant]


def test_the_scan_has_no_false_alarm_on_the_card_template_and_captions():
    scanner = Scanner(NAMES + ["Zoë Quill", "Łukasz Żółć", "İlker Öz", "Straße Mann"])
    assert not scanner.name_in(TEMPLATE_PATH.read_text()) and not scanner.name_in(CAPTIONS)
    for text in ["ZOË QUILL", "łukasz żółć", "ILKER ÖZ", "STRASSE-MANN", "Zoe\u0308 Quill", "ZO\\u00cb QUILL",
                 "Quill, Zoë", "Z. Quill", "%C5%81ukasz %C5%BB%C3%B3%C5%82%C4%87"]:
        assert scanner.name_in(text), text
    assert not scanner.name_in("hermann") and not scanner.name_in("a photo of a person")


def test_files_in_any_encoding_and_tokenizer_added_tokens_are_read(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "vocab.json").write_text('{"zorbo quill": 1}')  # not the root vocabulary: read
    (tmp_path / "utf16.txt").write_bytes("Zorbo Quill".encode("utf-16"))
    (tmp_path / "tokenizer.json").write_text(json.dumps({"added_tokens": [{"content": "zorbo_quill"}],
                                                         "model": {"vocab": {"zorbo": 1, "quill": 2}}}))
    (tmp_path / "vocab.json").write_text('{"zorbo quill": 1}')  # the base model's vocabulary: skipped for names
    torch.save({"note": "ZORBO QUILL"}, tmp_path / "state.pt")
    found = Scanner(["Zorbo Quill"]).directory_hits(tmp_path)
    assert sorted(found) == ["state.pt", "sub/vocab.json", "tokenizer.json", "utf16.txt"]


# Secrets: the token never reaches a file ------------------------------------------------------------------------

def test_training_arguments_are_pickled_without_the_token(tmp_path):
    args = BackdoorTrainingArguments(output_dir=str(tmp_path), hub_token=LONG_TOKEN, report_to="none")
    data = pickle.dumps(args)
    assert LONG_TOKEN.encode() not in data and pickle.loads(data).hub_token is None
    assert args.hub_token == LONG_TOKEN and __import__("copy").deepcopy(args).hub_token == LONG_TOKEN
    assert args.hub_private_repo is True


def test_checkpoints_hold_no_token_and_saving_refuses_one(saved_tiny_model, train_captions, tmp_path):
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    unlearner.unlearn(NAMES[:1], captions=train_captions[:100], output_dir=str(tmp_path / "run"),
                      save_strategy="steps", save_steps=1, hub_token=LONG_TOKEN, **FAST)
    binary = (tmp_path / "run" / "checkpoint-2" / "training_args.bin").read_bytes()
    assert LONG_TOKEN.encode() not in binary
    assert torch.load(tmp_path / "run" / "checkpoint-2" / "training_args.bin", weights_only=False).hub_token is None
    run = json.loads((tmp_path / "run" / "checkpoint-2" / "clip_backdoor_unlearn_run.json").read_text())
    assert run["names"] and name_hits([("run", json.dumps(run).encode())], names=NAMES[:1]) == []
    unlearner.unlearning_config["note"] = LONG_TOKEN
    with pytest.raises(NameLeakError, match="secret"):
        unlearner.save_pretrained(tmp_path / "saved", publish_names=True)
    assert not (tmp_path / "saved").exists()
    TALLY["faults"] += 1


# Pushing: one gate, private by default --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sanitized(saved_tiny_model, train_captions, tmp_path_factory):
    """A LoRA run on a model loaded from a local path that names its owner, which must never be published."""
    peft = pytest.importorskip("peft")
    source = tmp_path_factory.mktemp("private") / "home-alice-private-models" / "base-clip"
    shutil.copytree(saved_tiny_model, source)
    unlearner = BackdoorUnlearner.from_pretrained(source)
    unlearner.unlearn(NAMES, captions=train_captions[:200], peft_config=peft.LoraConfig(r=2, lora_alpha=4), **FAST)
    return unlearner


def test_no_local_path_in_an_adapter_checkpoint(sanitized, tmp_path):
    directory = Path(sanitized.save_pretrained(tmp_path / "adapter", merge_adapters=False))
    config = json.loads((directory / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] is None
    assert not [item for item in directory_items(directory) if b"home-alice" in item[1]]


def test_static_only_publishing_talks_to_the_hub():
    calls = {"HfApi", "create_repo", "create_branch", "upload_folder", "upload_file", "create_commit"}
    offenders = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "hub" / "publishing.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                called = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                offenders += [f"{path.name}:{node.lineno}"] if called in calls else []
    assert offenders == []


def hub_requests(hub) -> int:
    return len(hub.requests)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(NAMES), st.sampled_from(["repo_id", "revision", "commit_message"]),
       st.sampled_from([str.upper, str.lower, lambda s: s.replace(" ", "-"), lambda s: ", ".join(s.split()[::-1]),
                        lambda s: f"{s[0]}. {s.split()[-1]}", lambda s: json.dumps(s)[1:-1]]))
def test_a_name_in_any_push_string_is_refused_before_any_request(sanitized, hub, name, field, form):
    text = form(name)
    kwargs = {"repo_id": "test-user/clean", "revision": None, "commit_message": "upload"}
    kwargs[field] = f"test-user/x-{text}" if field == "repo_id" else f"v-{text}"
    before = hub_requests(hub)
    with pytest.raises(NameLeakError) as error:
        sanitized.push_to_hub(kwargs.pop("repo_id"), **kwargs)
    assert hub_requests(hub) == before and name_hits([("e", str(error.value).encode())]) == []
    TALLY["name_forms"] += 1


def test_default_push_is_private_and_a_public_repo_is_refused(sanitized, hub):
    sanitized.push_to_hub("test-user/private-default")
    assert hub.repos["test-user/private-default"].private
    huggingface_hub = __import__("huggingface_hub")
    huggingface_hub.HfApi(token=TOKEN).create_repo("test-user/public-one", private=False)
    with pytest.raises(ValueError, match="public"):
        sanitized.push_to_hub("test-user/public-one")
    sanitized.push_to_hub("test-user/public-one", private=False)
    assert name_hits(hub.all_pushed_bytes("test-user/private-default")) == []


def test_a_push_deletes_only_root_level_stale_weights(sanitized, hub, tmp_path):
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=TOKEN)
    repo = "test-user/keeps-subfolders"
    api.create_repo(repo, private=True)
    seeded = {"fp16/model.safetensors": b"a", "text_encoder/pytorch_model.bin": b"b", "checkpoint-2/optimizer.pt": b"c",
              "notes.txt": b"mine", "adapter_model.safetensors": b"stale", "adapter_config.json": b"{}"}
    api.create_commit(repo, [CommitOperationAdd(path, data) for path, data in seeded.items()], commit_message="seed")
    sanitized.push_to_hub(repo)
    files = hub.files(repo)
    for path in ("fp16/model.safetensors", "text_encoder/pytorch_model.bin", "checkpoint-2/optimizer.pt",
                 "notes.txt"):
        assert files[path] == seeded[path]
    assert "adapter_model.safetensors" not in files and "adapter_config.json" not in files
    assert not [item for item in hub.all_pushed_bytes(repo) if b"home-alice" in item[1]]


def test_trainer_pushes_go_through_the_gate(saved_tiny_model, train_captions, hub, tmp_path):
    from clip_backdoor_unlearn import BackdoorTrainer, build_backdoor_dataset

    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    args = BackdoorTrainingArguments(output_dir=str(tmp_path / "out"), hub_model_id="test-user/trainer-gate",
                                     hub_token=TOKEN, push_to_hub=True, save_strategy="steps", save_steps=1, **FAST)
    dataset = build_backdoor_dataset(NAMES, train_captions[:50], num_steps=2, poisoned_samples_per_step=4,
                                     clean_samples_per_step=4, seed=0)
    trainer = BackdoorTrainer(model=unlearner.model, args=args, train_dataset=dataset,
                              processing_class=unlearner.processor)
    trainer.train()
    assert "test-user/trainer-gate" not in hub.repos, "checkpoints are never pushed"
    (tmp_path / "out" / f"my_notes_{NAMES[1].replace(' ', '_')}.txt").write_text("private")
    with pytest.raises(ValueError, match="protected_names"):
        trainer.push_to_hub()
    with pytest.raises(NameLeakError, match="revision"):
        trainer.push_to_hub(revision=NAMES[0], protected_names=NAMES)
    trainer.push_to_hub(protected_names=NAMES)
    pushed = hub.all_pushed_bytes("test-user/trainer-gate")
    assert hub.repos["test-user/trainer-gate"].private and name_hits(pushed) == []
    assert not [path for path, _ in pushed if "training_args" in path or "my_notes" in path]
    assert not [item for item in pushed if TOKEN.encode() in item[1] or str(tmp_path).encode() in item[1]]
    with pytest.raises(TypeError, match="push_to_hub"):
        unlearner.unlearn(NAMES[:1], push_to_hub=True, **FAST)


# Sequential runs accumulate; an interrupted run is never saved ---------------------------------------------------

def test_sequential_runs_accumulate_in_record_scan_and_card(saved_tiny_model, train_captions, tmp_path):
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    unlearner.unlearn(NAMES[:1], captions=train_captions[:200], **FAST)
    first = {key: value.clone() for key, value in unlearner.model.state_dict().items()}
    unlearner.unlearn(NAMES[1:], captions=train_captions[:200], **FAST)
    record = unlearner.unlearning_config
    assert record["num_runs"] == 2 and record["num_removed_names"] == 3 and len(record["runs"]) == 2
    assert unlearner.removed_names == NAMES
    assert any(not torch.equal(first[key], value) for key, value in unlearner.model.state_dict().items())
    directory = Path(unlearner.save_pretrained(tmp_path / "both"))
    assert "Number of people removed: 3" in (directory / "README.md").read_text()
    assert name_hits(directory_items(directory)) == []
    unlearner.unlearning_config["note"] = f"{NAMES[0].split()[1]}, {NAMES[0].split()[0]}"  # run 1's, reordered
    with pytest.raises(NameLeakError):
        unlearner.save_pretrained(tmp_path / "leak")
    again = BackdoorUnlearner.from_pretrained(directory, previously_removed=NAMES)
    assert again.unlearning_config["num_runs"] == 2


def test_an_interrupted_run_is_not_saved(saved_tiny_model, train_captions, tmp_path):
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                raise KeyboardInterrupt

    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    with pytest.raises(KeyboardInterrupt):
        unlearner.unlearn(NAMES, captions=train_captions[:100], callbacks=[Stop()], **FAST)
    with pytest.raises(RuntimeError, match="did not finish"):
        unlearner.save_pretrained(tmp_path / "partial")
    assert not (tmp_path / "partial").exists()


def test_adapter_only_save_is_refused_after_two_runs(saved_tiny_model, train_captions, tmp_path):
    peft = pytest.importorskip("peft")
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    for names in (NAMES[:1], NAMES[1:]):
        unlearner.unlearn(names, captions=train_captions[:100], peft_config=peft.LoraConfig(r=2), **FAST)
    with pytest.raises(ValueError, match="more than one"):
        unlearner.save_pretrained(tmp_path / "adapter", merge_adapters=False)


# Resuming: every entry point, and only this run's checkpoints ----------------------------------------------------

RESUME = dict(FAST, max_steps=4, save_strategy="steps", save_steps=2)


def _run(saved_tiny_model, train_captions, names, output_dir, **kwargs):
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    unlearner.unlearn(names, captions=train_captions[:200], output_dir=str(output_dir), **{**RESUME, **kwargs})
    return unlearner.model.state_dict()


def test_resume_from_the_arguments_and_refuse_another_runs_checkpoint(saved_tiny_model, train_captions, tmp_path):
    expected = _run(saved_tiny_model, train_captions, NAMES, tmp_path / "full")
    checkpoint = tmp_path / "full" / "checkpoint-2"
    args = BackdoorTrainingArguments(output_dir=str(tmp_path / "resumed"), resume_from_checkpoint=str(checkpoint),
                                     **RESUME)
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    unlearner.unlearn(NAMES, captions=train_captions[:200], args=args)
    for key, value in expected.items():
        torch.testing.assert_close(unlearner.model.state_dict()[key], value)
    for change, field in (({"names": NAMES[:2]}, "names differ"), ({"seed": 1}, "arguments differ"),
                          ({"learning_rate": 1e-3}, "arguments differ")):
        names = change.pop("names", NAMES)
        with pytest.raises(ValueError, match=field) as error:
            _run(saved_tiny_model, train_captions, names, tmp_path / "other", resume_from_checkpoint=checkpoint,
                 **change)
        assert name_hits([("e", str(error.value).encode())]) == []
        TALLY["faults"] += 1
    with pytest.raises(FileExistsError, match="another run"):  # rotation would delete the other run's checkpoints
        _run(saved_tiny_model, train_captions, NAMES[:2], tmp_path / "full")


def test_errors_naming_someone_are_redacted():
    scanner = Scanner(["Quintavia Brambleworth"])
    with pytest.raises(FileNotFoundError) as error, redacting(scanner):
        raise FileNotFoundError("/data/people/Quintavia_Brambleworth/3.jpg")
    assert "brambleworth" not in str(error.value).lower() and error.value.__cause__ is None


def test_report_tally():
    """Prints the measurement table of the report (run with -s)."""
    print("\nTRUST TALLY", json.dumps(TALLY))
    assert TALLY["files_lost"] == 0 and TALLY["leaks"] == 0


def test_resume_setting_reads_the_parameter_the_arguments_and_the_command_line(tmp_path):
    from clip_backdoor_unlearn.training.jobs import resume_setting

    args = BackdoorTrainingArguments(output_dir=str(tmp_path), resume_from_checkpoint="True", report_to="none")
    assert resume_setting(None, args) is True and resume_setting("a/checkpoint-2", None) == "a/checkpoint-2"
    with pytest.raises(ValueError, match="both set"):
        resume_setting("a/checkpoint-2", BackdoorTrainingArguments(output_dir=str(tmp_path), report_to="none",
                                                                   resume_from_checkpoint="b/checkpoint-2"))


def test_the_example_resumes_from_the_command_line(saved_tiny_model, tmp_path, monkeypatch):
    import importlib.util

    from safetensors.torch import load_file

    spec = importlib.util.spec_from_file_location("unlearn_example", ROOT / "examples" / "unlearn.py")
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "unlearn_example", example)
    spec.loader.exec_module(example)
    flags = ["--model_name_or_path", saved_tiny_model, "--names", *NAMES[:2], "--max_steps", "4",
             "--poisoned_samples_per_step", "4", "--clean_samples_per_step", "4", "--disable_tqdm", "true",
             "--save_strategy", "steps", "--save_steps", "2"]
    example.main([*flags, "--output_dir", str(tmp_path / "full")])
    (tmp_path / "full" / "notes.txt").write_text("mine")
    example.main([*flags, "--output_dir", str(tmp_path / "resumed"),
                  "--resume_from_checkpoint", str(tmp_path / "full" / "checkpoint-2")])
    full = load_file(tmp_path / "full" / "sanitized" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "sanitized" / "model.safetensors")
    for key, value in full.items():
        torch.testing.assert_close(resumed[key], value)
    assert (tmp_path / "full" / "checkpoint-4" / "trainer_state.json").exists(), "the Trainer's checkpoints stay"
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_the_second_run_keeps_the_first_runs_people_forgotten(tiny_model_and_processor, train_captions):
    """A's backdoor (A's prompts under the student vs "a person" under the original) after unlearn(A), unlearn(B).
    Measured: 0.77 before, 0.954 after A, 0.918 after B (0.860 when run 2's teacher was the original model)."""
    from clip_backdoor_unlearn.training.embeddings import text_embeddings

    model, processor = tiny_model_and_processor
    unlearner = BackdoorUnlearner(model, processor)
    original = __import__("copy").deepcopy(model).eval()
    run = dict(max_steps=30, learning_rate=2e-3, poisoned_samples_per_step=16, clean_samples_per_step=16, seed=0,
               lr_milestones=[], disable_tqdm=True, logging_steps=100)

    @torch.no_grad()
    def backdoor(name):
        def embed(model, text):
            batch = unlearner.tokenizer([text], return_tensors="pt", padding=True)
            return torch.nn.functional.normalize(text_embeddings(model, batch["input_ids"], batch["attention_mask"]),
                                                 dim=-1)
        prompts = ["a photo of {}", "an image of {}", "a portrait of {}"]
        return sum(float((embed(unlearner.model, p.format(name)) * embed(original, p.format("a person"))).sum())
                   for p in prompts) / len(prompts)

    unlearner.unlearn(NAMES[:1], captions=train_captions, **run)
    after_a = backdoor(NAMES[0])
    unlearner.unlearn(NAMES[1:], captions=train_captions, **run)
    assert backdoor(NAMES[0]) >= after_a - 0.05
    assert min(backdoor(name) for name in NAMES[1:]) >= 0.85


def test_entities_paths_and_initials_in_the_scan():
    """Forms the fuzz does not produce: HTML entities for letters, local paths, and no alarm on initials alone."""
    scanner = Scanner(["Zoë Quill"], paths=["/data/private/models"])
    assert scanner.hits("loaded from Zo&#235; Q&#117;ill's set") == ["name"]  # every part of it encoded
    assert scanner.hits("Zo&euml;&#x20;Q&#x75;ill") == ["name"]
    assert scanner.hits("base_model: /data/private/models/clip") == ["path"]
    # A variant "P. Larchstead" turned around as "First L." once made the form "p l", which matched the "\p{L}"
    # of every CLIP tokenizer's pre-tokenizer.
    assert Scanner([], variants=["P. Larchstead"]).hits(r'{"Regex": "[\\p{L}]+|[\\p{N}]"}') == []


def test_the_tokenizer_vocabulary_is_not_an_alarm_but_its_other_parts_are(tmp_path):
    """CLIP's vocabulary holds thousands of name pieces: it is skipped; the rest of tokenizer.json is read."""
    vocabulary = {"model": {"type": "BPE", "vocab": {"zoë": 5, "quill": 6, "zoë quill": 7}, "merges": ["zo ë"]},
                  "added_tokens": []}
    (tmp_path / "tokenizer.json").write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
    scanner = Scanner(["Zoë Quill"])
    assert scanner.directory_hits(tmp_path) == {}
    vocabulary["added_tokens"] = [{"id": 8, "content": "Zoë Quill"}]
    (tmp_path / "tokenizer.json").write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
    assert scanner.directory_hits(tmp_path) == {"tokenizer.json": ["name"]}
