"""Writing a sanitized checkpoint and publishing it: the one way out of this package to a folder or the Hub.

``write_checkpoint`` writes model, processor, run record and card and scans the result (``privacy.Scanner``);
``push_folder`` is the only code that talks to the Hub: it scans every file and every string of the request
(repository id, branch, commit message) first, creates repositories private unless asked otherwise, and uploads
everything in one commit (atomic on the Hub), deleting only root-level weight files the new commit replaces.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, HfApi, ModelCard
from huggingface_hub.errors import RepositoryNotFoundError
from transformers import PreTrainedModel

from .model_card import hub_id
from .privacy import Scanner
from .record import UNLEARNING_CONFIG_NAME

# Root-level files an earlier push may have left that would load instead of (or next to) the new weights.
STALE_HUB_FILES = re.compile(r"(model.*\.safetensors|.*\.index\.json|pytorch_model.*\.bin|tf_model\.h5|"
                             r"flax_model\.msgpack|adapter_model\.(safetensors|bin)|adapter_config\.json)")


def write_checkpoint(directory: str, model: PreTrainedModel, processor, record: dict[str, Any], card: ModelCard,
                     scanner: Scanner, publish_names: bool = False, **save_kwargs) -> None:
    """Write everything a sanitized checkpoint holds into ``directory``, then scan it (names only in the card
    with ``publish_names``; secrets and local paths never)."""
    model.save_pretrained(directory, **save_kwargs)
    processor.save_pretrained(directory)
    adapter_config = os.path.join(directory, "adapter_config.json")
    if os.path.isfile(adapter_config):  # PEFT records the local folder the base was loaded from
        with open(adapter_config, encoding="utf-8") as handle:
            config = json.load(handle)
        config["base_model_name_or_path"] = hub_id(config.get("base_model_name_or_path"))
        if config["base_model_name_or_path"] is None:
            config.pop("revision", None)
        with open(adapter_config, "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=2, sort_keys=True)
    if record:
        with open(os.path.join(directory, UNLEARNING_CONFIG_NAME), "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, sort_keys=True)
    card.save(os.path.join(directory, "README.md"))  # after the model: PEFT writes a card of its own
    scanner.check(directory=directory, names_allowed_in=("README.md",) if publish_names else ())


def push_folder(folder: str | os.PathLike, repo_id: str, *, scanner: Scanner, commit_message: str,
                token: str | bool | None = None, private: bool = True, revision: str | None = None,
                commit_description: str | None = None, names_allowed_in: Iterable[str] = (),
                delete_stale: bool = True) -> CommitInfo:
    """Upload ``folder`` to ``repo_id`` in one commit, after scanning every file and every string of the request.

    ``private=True`` (default) creates the repository private and refuses to push into an existing public one;
    ``private=False`` publishes. Root-level weight files the commit does not rewrite are deleted in it, so
    ``from_pretrained(repo_id)`` loads what was pushed; nothing in subfolders is touched.
    """
    texts = {"repo_id": repo_id, "revision": revision, "commit_message": commit_message,
             "commit_description": commit_description}
    scanner.check(directory=folder, texts=texts, names_allowed_in=names_allowed_in)
    api = HfApi(token=token)
    if "/" not in repo_id:
        repo_id = f"{api.whoami()['name']}/{repo_id}"
        scanner.check(texts={"repo_id": repo_id})
    try:
        info = api.repo_info(repo_id)
    except RepositoryNotFoundError:
        repo_id = api.create_repo(repo_id, private=bool(private), exist_ok=True).repo_id
    else:
        if private and not info.private:
            raise ValueError("The repository exists and is public, while private=True was asked for: make it "
                             "private on the Hub first, or pass private=False to publish there on purpose.")
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    root = Path(folder)
    files = sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
    operations: list = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(root / path)) for path in files]
    if delete_stale:
        existing = api.list_repo_files(repo_id, revision=revision)
        operations += [CommitOperationDelete(path_in_repo=path) for path in existing
                       if "/" not in path and path not in files and STALE_HUB_FILES.fullmatch(path)]
    return api.create_commit(repo_id, operations, commit_message=commit_message, revision=revision,
                             commit_description=commit_description)


def push_checkpoint(repo_id: str, write: Callable[[str], None], *, scanner: Scanner, commit_message: str,
                    publish_names: bool = False, private: bool = True, token: str | bool | None = None,
                    revision: str | None = None) -> CommitInfo:
    """Stage the checkpoint with ``write(directory)`` in a temporary folder and ``push_folder`` it."""
    scanner.check(texts={"repo_id": repo_id, "revision": revision, "commit_message": commit_message})
    with tempfile.TemporaryDirectory(prefix="clip-backdoor-unlearn-push-") as staging:
        write(staging)
        return push_folder(staging, repo_id, scanner=scanner, commit_message=commit_message, token=token,
                           private=private, revision=revision,
                           names_allowed_in=("README.md",) if publish_names else ())
