"""Audit a saved CLIP model: does it still recognise the people in a folder of face images?

Input layout (the ``datasets`` *imagefolder* convention)::

    faces/
        Jane_Doe/        one sub-folder per person; the folder name is the person's name
            001.jpg
            002.png
        John Roe/
            ...

Folder names map to names of the pool exactly; when a folder name is not in the pool, its underscores are read
as spaces (``Jane_Doe`` → ``Jane Doe``), since names with spaces are awkward as folder names.  The names file
holds the candidate pool, one name per line (blank lines and lines starting with ``#`` are skipped); everyone
with a folder must be in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from .idia import IDIAResult, identity_inference_attack
from .templates import validate_templates

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def read_lines(path: str | Path) -> list[str]:
    """Non-empty, stripped lines of a UTF-8 text file, without ``#`` comment lines."""
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def read_templates(path: str | Path) -> tuple[str, ...]:
    """Prompt templates from a file, one per line with one ``{}`` each (surrounding spaces dropped)."""
    return validate_templates(read_lines(path), argument=f"templates in {path}")


def folder_to_name(folder_name: str, candidate_names: Sequence[str] | set[str]) -> str:
    """The pool name a sub-folder stands for: itself if in the pool, else with underscores read as spaces."""
    if folder_name in candidate_names:
        return folder_name
    return folder_name.replace("_", " ")


def load_faces(folder: str | Path, candidate_names: Sequence[str] = ()) -> dict[str, list[Image.Image]]:
    """Load ``{name: [RGB PIL images]}`` from one sub-folder per person (sorted by folder, then file).

    Hidden files and files without an image extension are skipped.  Error messages identify folders by their
    index in sorted order, not by name, so that logs of an audit do not list who was audited.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Faces folder {folder} does not exist or is not a directory.")
    pool = set(candidate_names)
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise ValueError(f"{folder} has no sub-folders; expected one sub-folder of images per person.")
    people: dict[str, list[Image.Image]] = {}
    for index, subfolder in enumerate(subfolders):
        name = folder_to_name(subfolder.name, pool)
        if name in people:
            raise ValueError(
                f"Sub-folder #{index} (in sorted order) of {folder} names the same person as another."
            )
        files = sorted(
            p
            for p in subfolder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise ValueError(f"Sub-folder #{index} (in sorted order) of {folder} has no image files.")
        images = []
        for file_index, path in enumerate(files):
            try:
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
            except OSError as error:
                raise ValueError(
                    f"Image #{file_index} of sub-folder #{index} (in sorted order) of {folder} "
                    f"cannot be read ({type(error).__name__})"
                ) from None
        people[name] = images
    return people


def load_model(model_dir: str | Path, device: str | torch.device | None = None):
    """``(CLIPModel, CLIPProcessor)`` from a ``save_pretrained`` directory (local only, no download).

    transformers 5 picks the PIL image processor when torchvision is absent, so this works on a bare install.
    """
    from transformers import CLIPModel, CLIPProcessor

    if not Path(model_dir).is_dir():
        raise FileNotFoundError(f"Model directory {model_dir} does not exist.")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = CLIPModel.from_pretrained(model_dir, local_files_only=True).to(device).eval()
    processor = CLIPProcessor.from_pretrained(model_dir, local_files_only=True)
    return model, processor


def audit(
    model_dir: str | Path,
    faces: str | Path,
    names: str | Path | Sequence[str],
    *,
    templates: Sequence[str] | None = None,
    min_correct_prompts: int = 1,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    show_progress_bar: bool = False,
) -> IDIAResult:
    """Run the identity inference attack on a saved model against a faces folder and a pool of names.

    Args:
        model_dir: a ``save_pretrained`` directory holding a ``CLIPModel`` and its processor.
        faces: a folder with one sub-folder of images per person (see the module docstring).
        names: the candidate pool, as a path to a names file or a list of names.
        templates: prompt templates (default: the 21 ``IDIA_TEMPLATES``).
        min_correct_prompts: prompts that must find a person for them to count as detected.
        batch_size: texts/images per forward pass.
        device: where to run; default CUDA when available.
    """
    candidate_names = read_lines(names) if isinstance(names, (str, Path)) else list(names)
    people = load_faces(faces, candidate_names)
    model, processor = load_model(model_dir, device)
    return identity_inference_attack(
        model,
        processor,
        people,
        candidate_names,
        templates=templates,
        min_correct_prompts=min_correct_prompts,
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
    )
