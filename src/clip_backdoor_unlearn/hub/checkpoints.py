"""Finding and checking a Trainer checkpoint to resume unlearning from, before anything is trained.

``Trainer`` writes a checkpoint's files one after another and ``trainer_state.json`` last, so a run killed while
saving leaves a directory without it (or with a truncated weights or optimizer file). Resuming from such a
directory would either crash deep inside training or, worse, silently restart the optimizer and give a different
model than an uninterrupted run. So a checkpoint is only used when it is complete: its state parses, its weights'
headers match their size, and its optimizer and scheduler archives are whole.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import zipfile
from typing import Any

from safetensors import safe_open

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "adapter_model.bin")
STATE_FILES = ("optimizer.pt", "scheduler.pt")


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why the checkpoint directory ``path`` cannot be resumed from, or ``None`` if it is complete."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return "does not exist or is not a directory"
    try:
        with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as handle:
            state = json.load(handle)
        if not isinstance(state.get("global_step"), int):
            return "has a trainer_state.json without a global_step"
    except FileNotFoundError:
        return "has no trainer_state.json (the save was interrupted, or it is not a Trainer checkpoint)"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "has a corrupt trainer_state.json"
    weights = [name for name in WEIGHT_FILES if os.path.isfile(os.path.join(path, name))]
    if not weights:
        return "holds no model weights"
    for name in weights:
        if name.endswith(".safetensors"):
            try:
                with safe_open(os.path.join(path, name), framework="pt") as handle:
                    handle.keys()
            except Exception:  # noqa: BLE001 - safetensors raises several types for a bad file
                return f"has a corrupt or truncated {name}"
    for name in STATE_FILES:
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            return f"has no {name}; resuming without it would not reproduce the uninterrupted run"
        if not zipfile.is_zipfile(file):
            return f"has a corrupt or truncated {name}"
    return None


def checkpoints_in(output_dir: str | os.PathLike) -> list[str]:
    """The ``checkpoint-<step>`` directories in ``output_dir``, latest step first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(match.group(1)), name) for name in os.listdir(output_dir) if (match := _CHECKPOINT.match(name))]
    return [os.path.join(os.fspath(output_dir), name) for _, name in sorted(found, reverse=True)]


def resolve_resume_checkpoint(resume_from_checkpoint: str | os.PathLike | bool | None, output_dir: str) -> str | None:
    """The checkpoint directory to resume from, checked; ``None`` when not resuming.

    ``True`` picks the latest *complete* checkpoint in ``output_dir`` (an interrupted save is skipped with a
    warning); a path must itself be complete. Raises ``FileNotFoundError`` or ``OSError`` with the reason.
    """
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is True:
        candidates = checkpoints_in(output_dir)
        for skipped, candidate in enumerate(candidates):
            if checkpoint_problem(candidate) is None:
                if skipped:
                    logger.warning("Skipped %d incomplete checkpoint(s) newer than the one resumed from.", skipped)
                return candidate
        raise FileNotFoundError(f"resume_from_checkpoint=True, but output_dir holds no complete checkpoint-<step> "
                                f"directory ({len(candidates)} incomplete).")
    path = os.fspath(resume_from_checkpoint)
    problem = checkpoint_problem(path)
    if problem is not None:
        error = FileNotFoundError if not os.path.isdir(path) else OSError
        raise error(f"Cannot resume from that checkpoint: it {problem}.")
    return path


# The run fingerprint -----------------------------------------------------------------------------------------------
# A checkpoint records which run wrote it (RUN_FILE), so that resuming with other names, arguments or base weights is
# refused instead of silently mixing two runs. The names enter only through a keyed HMAC: a plain hash of one or two
# names falls to trying every name of a candidate pool.

RUN_FILE = "clip_backdoor_unlearn_run.json"
RUN_KEY_ENV = "CLIP_BACKDOOR_UNLEARN_RUN_KEY"


def run_key() -> bytes:
    """This machine's secret key for run fingerprints: ``$CLIP_BACKDOOR_UNLEARN_RUN_KEY`` (hex), or 32 random bytes
    kept (mode 0600) in the cache root, ``$CLIP_BACKDOOR_UNLEARN_CACHE`` or ``~/.cache/clip_backdoor_unlearn``."""
    if os.environ.get(RUN_KEY_ENV):
        return bytes.fromhex(os.environ[RUN_KEY_ENV])
    root = os.environ.get("CLIP_BACKDOOR_UNLEARN_CACHE") or os.path.expanduser("~/.cache/clip_backdoor_unlearn")
    path = os.path.join(root, "run-key")
    if not os.path.isfile(path):
        os.makedirs(root, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(32))
                handle.flush()
                os.fsync(handle.fileno())
    with open(path, "rb") as handle:
        return handle.read()


def keyed_digest(*parts: Any) -> str:
    """HMAC-SHA256 of ``parts`` (JSON, sorted keys) under ``run_key()``."""
    message = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hmac.new(run_key(), message, hashlib.sha256).hexdigest()


def key_id() -> str:
    return hashlib.sha256(run_key()).hexdigest()[:8]


def check_fingerprint(checkpoint: str | os.PathLike, fingerprint: dict[str, Any]) -> None:
    """Raise ``ValueError`` unless ``checkpoint`` was written by the run ``fingerprint`` describes; the message
    names the fields that differ ("names differ"), never their values."""
    try:
        with open(os.path.join(checkpoint, RUN_FILE), encoding="utf-8") as handle:
            recorded = json.load(handle)
    except (OSError, ValueError):
        raise ValueError("Cannot resume: the checkpoint has no readable run fingerprint, so it cannot be shown to "
                         "come from this run (a checkpoint of another tool or version?).") from None
    if recorded.get("key_id") != fingerprint.get("key_id"):
        raise ValueError(f"Cannot resume: the checkpoint was fingerprinted with another run key; set {RUN_KEY_ENV} "
                         "to the key of the machine that wrote it.")
    differ = sorted(key for key in set(recorded) | set(fingerprint) if recorded.get(key) != fingerprint.get(key))
    if differ:
        fields = ", ".join(f"{key} differ" for key in differ)
        raise ValueError(f"Cannot resume: the checkpoint belongs to another run ({fields}). Resume with the same "
                         "names, arguments and base model, or start a new run in a new output_dir.")
