"""The last check before a sanitized checkpoint is written or published: no removed name in any file.

The names are the one thing a sanitized model must not disclose, and they could slip in from many places (a config
field, a metric key, a user-chosen repository name, a file name). Rather than trusting every writer, the finished
directory is scanned, every byte of every file, for every name: ignoring case, with or without spaces, underscores or
dashes between its words, raw or JSON-escaped. Errors point at files, never at names (they end up in logs).

Two kinds of bytes are skipped, because they cannot reveal who was removed: the tokenizer's vocabulary (the base
model's, unchanged by unlearning; CLIP's holds thousands of single-word names) and the tensor data of safetensors
files (only their JSON header can hold text).
"""

from __future__ import annotations

import json
import mmap
import os
import re
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

VOCABULARY_FILES = frozenset({"vocab.json", "merges.txt", "tokenizer.json"})


class NameLeakError(ValueError):
    """A file (or repository name, or commit message) would contain a removed name."""


def name_patterns(names: Iterable[str]) -> list[re.Pattern[bytes]]:
    """One byte pattern per spelling: each name as given and JSON-escaped, words joined by up to 3 separators."""
    patterns = []
    for name in names:
        for spelling in dict.fromkeys((name, json.dumps(name)[1:-1])):
            words = [re.escape(word.encode("utf-8")) for word in spelling.split()]
            if words:
                patterns.append(re.compile(rb"[\W_]{0,3}".join(words), re.IGNORECASE))
    return patterns


def _contains(data, patterns: list[re.Pattern[bytes]]) -> bool:
    return any(pattern.search(data) for pattern in patterns)


def _file_contains(path: Path, patterns: list[re.Pattern[bytes]]) -> bool:
    if path.stat().st_size == 0:
        return False
    with open(path, "rb") as handle:
        if path.suffix == ".safetensors":
            (header_size,) = struct.unpack("<Q", handle.read(8))
            return _contains(handle.read(header_size), patterns)
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _contains(data, patterns)


def files_with_names(directory: str | os.PathLike, names: Iterable[str]) -> list[str]:
    """Relative paths (POSIX) under ``directory`` whose path or content contains one of ``names``."""
    patterns = name_patterns(names)
    if not patterns:
        return []
    root = Path(directory)
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        scanned = path.is_file() and path.name not in VOCABULARY_FILES
        if _contains(relative.encode("utf-8"), patterns) or scanned and _file_contains(path, patterns):
            found.append(relative)
    return found


def ensure_no_names(names: Iterable[str], *, directory: str | os.PathLike | None = None,
                    texts: Mapping[str, str] | None = None) -> None:
    """Raise ``NameLeakError`` if a file under ``directory``, or one of ``texts`` (label → text), holds a name.

    The error lists the offending files by path, except paths that themselves hold a name (those are counted).
    """
    names = list(names)
    patterns = name_patterns(names)
    if not patterns:
        return
    leaks = [label for label, text in (texts or {}).items() if _contains(text.encode("utf-8"), patterns)]
    paths = files_with_names(directory, names) if directory is not None else []
    named_paths = [path for path in paths if _contains(path.encode("utf-8"), patterns)]
    leaks += [path for path in paths if path not in named_paths]
    if named_paths:
        leaks.append(f"{len(named_paths)} file name(s)")
    if leaks:
        raise NameLeakError(
            f"Refusing to write or publish: a removed name appears in {', '.join(leaks)}. The names are what a "
            "sanitized model must not disclose; remove them, or pass publish_names=True to publish them on purpose."
        )
