"""Writing checkpoint directories so that nothing the user had is lost and a crash never leaves half of one.

A saved directory carries a manifest (``MANIFEST_NAME``: every file's SHA-256), written last. A save may replace
only a directory that is provably ours (its files are exactly the manifest's, unedited) or an empty one; anything
else (a folder holding other files, a file, a symlink, the working directory or one of its parents, the home
directory, the source model) is refused before anything is written.

Everything is written into a sibling staging directory, fsynced, then swapped in with a journaled two-rename:
``.<name>.swap.json`` records both sides, the old directory moves aside, the new one moves in, the journal goes.
``recover(path)`` (run before every save) finishes or rolls back a swap a crash interrupted, so at every instant
the path holds the old or the new checkpoint, complete, or (after a crash) ``recover`` restores one of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

MANIFEST_NAME = ".clip_backdoor_unlearn_manifest.json"
STAGING_MARKER = ".clip_backdoor_unlearn_staging"
TOOL = "clip-backdoor-unlearn"


def _step(name: str) -> None:
    """A named point of the save sequence; tests inject faults here."""


def same_location(first: str | os.PathLike, second: str | os.PathLike | None) -> bool:
    if second is None or not os.path.exists(second):
        return False
    return os.path.realpath(first) == os.path.realpath(second)


def refuse_source_overwrite(output_dir: str | os.PathLike, source_dir: str | os.PathLike | None) -> None:
    """Raise if ``output_dir`` is (or contains, or is inside) the directory the model was loaded from."""
    if source_dir is None or not os.path.isdir(source_dir):
        return
    output, source = Path(os.path.realpath(output_dir)), Path(os.path.realpath(source_dir))
    if output == source or source in output.parents or output in source.parents:
        raise ValueError("Refusing to write there: it would overwrite the model this unlearner was loaded from. "
                         "Save the sanitized model to a new directory.")


# The manifest ------------------------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def directory_files(directory: str | os.PathLike) -> dict[str, str]:
    """Relative POSIX path → SHA-256 of every regular file under ``directory`` (the manifest excluded)."""
    root = Path(directory)
    return {path.relative_to(root).as_posix(): _sha256(path) for path in sorted(root.rglob("*"))
            if path.is_file() and not path.is_symlink() and path.name != MANIFEST_NAME}


def write_manifest(directory: str | os.PathLike) -> None:
    """Record every file of ``directory`` as written by this tool (call it last)."""
    manifest = {"tool": TOOL, "format": 1, "files": directory_files(directory)}
    with open(os.path.join(directory, MANIFEST_NAME), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)


def foreign_entries(directory: str | os.PathLike) -> int:
    """How many entries of ``directory`` this tool did not write (0: empty, or exactly its manifest, unedited)."""
    root = Path(directory)
    entries = list(root.rglob("*"))
    if not entries:
        return 0
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
        listed = dict(manifest["files"]) if manifest.get("tool") == TOOL else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        listed = {}
    parents = {parent.as_posix() for relative in listed for parent in Path(relative).parents}
    foreign = 0
    for path in entries:
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            foreign += 1
        elif path.is_dir():
            foreign += relative not in parents
        elif relative == MANIFEST_NAME:
            foreign += not listed
        else:
            foreign += listed.get(relative) != _sha256(path)
    return foreign + sum(not (root / relative).is_file() for relative in listed)


def protected_locations(extra: Iterable[str | os.PathLike | None] = ()) -> list[Path]:
    """Directories a save never replaces: the working directory and its parents, home, ``extra`` (source, caches)."""
    cwd = Path(os.path.realpath(os.getcwd()))
    places = [cwd, *cwd.parents, Path(os.path.realpath(os.path.expanduser("~")))]
    return places + [Path(os.path.realpath(place)) for place in extra if place]


def check_target(output_dir: str | os.PathLike, *, protected: Iterable[str | os.PathLike | None] = (),
                 replace_existing: bool = False) -> None:
    """Raise ``FileExistsError`` unless ``output_dir`` is absent, empty, or a checkpoint this tool wrote.

    ``replace_existing=True`` also replaces a directory of unknown origin (for a cache the caller owns); the
    protected locations are refused even then. Messages give counts, never the path (it may name someone).
    """
    path = Path(os.path.abspath(output_dir))
    real = Path(os.path.realpath(path))
    if any(real == place or real in place.parents for place in protected_locations(protected)):
        raise FileExistsError("Refusing to save there: it is the working directory, one of its parents, the home "
                              "directory or the source model. Save into a new, dedicated folder.")
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise FileExistsError("Refusing to save there: the path is a file or a link, not a folder this tool wrote.")
    if path.is_dir() and not replace_existing:
        foreign = foreign_entries(path)
        if foreign:
            raise FileExistsError(
                f"Refusing to save there: the folder holds {foreign} entr{'y' if foreign == 1 else 'ies'} this tool "
                "did not write (or that were edited since). Nothing was changed; save into a new or empty folder.")


# Crash-safe swap ---------------------------------------------------------------------------------------------------

def _fsync(path: str | os.PathLike) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(directory: str) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            _fsync(os.path.join(root, name))
        _fsync(root)


def _journal(output_dir: str) -> str:
    return os.path.join(os.path.dirname(output_dir), f".{os.path.basename(output_dir)}.swap.json")


def _is_our_leftover(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path) and (
        os.path.exists(os.path.join(path, STAGING_MARKER)) or foreign_entries(path) == 0)


def recover(output_dir: str | os.PathLike) -> None:
    """Finish or roll back a swap a crash interrupted, and remove this tool's leftover staging folders.

    With a journal and no ``output_dir``, the new checkpoint (complete: the manifest is written last) is moved in,
    or else the old one; leftovers are removed only when they hold this tool's marker or manifest.
    """
    output_dir = os.path.abspath(os.fspath(output_dir))
    parent, base = os.path.dirname(output_dir), os.path.basename(output_dir)
    journal = _journal(output_dir)
    if os.path.exists(journal):
        try:
            with open(journal, encoding="utf-8") as handle:
                sides = json.load(handle)
            old, new = (os.path.join(parent, os.path.basename(sides[key])) for key in ("old", "new"))
        except (OSError, ValueError, KeyError, TypeError):
            old = new = None
        if new and not os.path.lexists(output_dir):
            complete_new = os.path.isdir(new) and foreign_entries(new) == 0 and os.listdir(new)
            source = new if complete_new else old
            if source and os.path.isdir(source):
                os.replace(source, output_dir)
                _fsync(parent)
        os.remove(journal)
    if not os.path.isdir(parent):
        return
    for entry in os.listdir(parent):
        if entry.startswith((f".{base}.tmp-", f".{base}.old-")):
            leftover = os.path.join(parent, entry)
            if _is_our_leftover(leftover):
                shutil.rmtree(leftover, ignore_errors=True)


def write_atomically(output_dir: str | os.PathLike, write: Callable[[str], None], *,
                     protected: Iterable[str | os.PathLike | None] = (), replace_existing: bool = False) -> str:
    """Call ``write(staging_dir)`` and swap the finished directory in at ``output_dir``; returns ``output_dir``.

    ``output_dir`` must be absent, empty or an earlier checkpoint of this tool (``check_target``), checked before
    ``write`` runs; the finished directory gets a manifest, normal permissions and an fsync before the swap.
    """
    output_dir = os.path.abspath(os.fspath(output_dir))
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    recover(output_dir)
    check_target(output_dir, protected=protected, replace_existing=replace_existing)
    base = os.path.basename(output_dir)
    staging = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    retired = None
    try:
        Path(staging, STAGING_MARKER).touch()
        write(staging)
        os.remove(os.path.join(staging, STAGING_MARKER))
        write_manifest(staging)
        _fsync_tree(staging)
        _step("staged")
        if not os.path.lexists(output_dir) or (os.path.isdir(output_dir) and not os.listdir(output_dir)):
            os.replace(staging, output_dir)  # onto nothing or onto an empty folder: one atomic rename
            _step("replaced")
        else:
            retired = os.path.join(parent, f".{base}.old-{os.path.basename(staging).rsplit('-', 1)[-1]}")
            journal = _journal(output_dir)
            with open(journal, "w", encoding="utf-8") as handle:
                json.dump({"old": os.path.basename(retired), "new": os.path.basename(staging)}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            _fsync(parent)
            _step("journaled")
            os.replace(output_dir, retired)
            _step("moved_aside")
            try:
                os.replace(staging, output_dir)
            except BaseException:
                os.replace(retired, output_dir)
                raise
            _step("replaced")
            _fsync(parent)
            os.remove(journal)
            _step("unjournaled")
            shutil.rmtree(retired)
        _fsync(parent)
    except BaseException:
        if retired is not None and not os.path.lexists(output_dir) and os.path.isdir(retired):
            os.replace(retired, output_dir)
        if os.path.lexists(_journal(output_dir)) and os.path.isdir(output_dir):
            os.remove(_journal(output_dir))
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir
