"""Writing a sanitized checkpoint and publishing it: model, processor, run record and card, scanned for names.

Both ways out (a local directory, a Hub commit) write the same files through ``write_checkpoint``, and both refuse
to go on when a removed name shows up anywhere in what would be written (``privacy.ensure_no_names``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from huggingface_hub import CommitInfo, HfApi, ModelCard
from transformers import PreTrainedModel

from .privacy import ensure_no_names
from .record import UNLEARNING_CONFIG_NAME

# Files an earlier push may have left that would load instead of (or next to) the new weights.
STALE_HUB_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack",
                   "model.safetensors.index.json", "adapter_config.json")


def write_checkpoint(directory: str, model: PreTrainedModel, processor, record: dict[str, Any], card: ModelCard,
                     names: Sequence[str], publish_names: bool = False, **save_kwargs) -> None:
    """Write everything a sanitized checkpoint holds into ``directory``, then scan it for ``names``."""
    model.save_pretrained(directory, **save_kwargs)
    processor.save_pretrained(directory)
    if record:
        with open(os.path.join(directory, UNLEARNING_CONFIG_NAME), "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, sort_keys=True)
    card.save(os.path.join(directory, "README.md"))  # after the model: PEFT writes a card of its own
    if not publish_names:
        ensure_no_names(names, directory=directory)


def push_checkpoint(repo_id: str, write, *, names: Sequence[str], publish_names: bool = False,
                    private: bool | None = None, token: str | bool | None = None,
                    commit_message: str, revision: str | None = None, api: HfApi | None = None) -> CommitInfo:
    """Stage the checkpoint with ``write(directory)`` and upload it to ``repo_id`` in one commit.

    The repository id and commit message are scanned for the names first; stale weight files of an earlier push
    are deleted in the same commit, so ``from_pretrained(repo_id)`` loads what was pushed.
    """
    api = api or HfApi(token=token)
    if not publish_names:
        ensure_no_names(names, texts={"repo_id": repo_id, "commit_message": commit_message})
    with tempfile.TemporaryDirectory(prefix="clip-backdoor-unlearn-push-") as staging:
        write(staging)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message=commit_message,
                                 revision=revision, delete_patterns=list(STALE_HUB_FILES))
