"""Writing checkpoints so that a crash never leaves half of one, and never over the model they came from.

Everything is written into a fresh sibling directory first; only when it is complete does it take the target's
place (``os.replace``, atomic on one filesystem). An existing target is moved aside first and deleted only after
the new one is in place, so at every instant the path holds the old checkpoint, the new one, or nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


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
        raise ValueError(
            f"Refusing to write to {os.fspath(output_dir)!r}: it would overwrite the model this unlearner was loaded "
            "from. Save the sanitized model to a new directory."
        )


def write_atomically(output_dir: str | os.PathLike, write: Callable[[str], None]) -> str:
    """Call ``write(tmp_dir)`` and move the finished directory to ``output_dir``; returns ``output_dir``."""
    output_dir = os.path.abspath(os.fspath(output_dir))
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.tmp-", dir=parent)
    try:
        write(staging)
        if os.path.lexists(output_dir):
            retired = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.old-", dir=parent)
            os.rmdir(retired)
            os.replace(output_dir, retired)
            os.replace(staging, output_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir
