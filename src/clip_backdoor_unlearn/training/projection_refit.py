"""Refit the image projection after training: clean pictures back toward the teacher, removed faces held in place.

While the removed faces are untied from their names, the whole image tower drifts a little, and that drift costs
zero-shot accuracy. Part of it can be undone in closed form at the last linear layer: a ridge regression of the
projection that maps the student's pooled features of clean pictures and other people's faces to the teacher's
embeddings, while the removed faces keep the embeddings training gave them (``projection_refit_hold``). It reads
the pictures training drew from and no name (docs/method.md, "The projection refit").
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import torch
from PIL import Image

if TYPE_CHECKING:
    from ..data.images import VisionBackdoorCollator

RIDGE = 1e-3
"""Ridge penalty toward the trained projection, relative to the mean variance of the clean pictures' features."""


def refit_pictures(collator: VisionBackdoorCollator, samples: int, seed: int) -> tuple[list[Image.Image],
                                                                                     list[Image.Image]]:
    """``(kept, removed)`` pictures for the refit, drawn with ``seed`` from what training drew from.

    Kept: ``samples`` clean images (all of them if fewer) and ``samples // 2`` other people's faces pasted on clean
    images as in training. Removed: ``samples // 2`` removed faces pasted the same way and every removed face picture
    as given.
    """
    rng = random.Random(seed)
    backgrounds = collator.clean_images
    clean = rng.sample(backgrounds, min(samples, len(backgrounds)))

    def pasted(faces: list[Image.Image], count: int) -> list[Image.Image]:
        if not faces:
            return []
        return [collator.augmentation.apply(rng.choice(faces), rng.choice(backgrounds), rng.randrange(2**31))
                for _ in range(count)]

    kept = clean + pasted(collator.reference_faces, samples // 2)
    removed = pasted(collator.face_images, samples // 2) + list(collator.face_images)
    return kept, removed


def refit_projection(weight: torch.Tensor, kept_features: torch.Tensor, teacher_embeddings: torch.Tensor,
                     removed_features: torch.Tensor, hold: float) -> torch.Tensor:
    """The projection ``W'`` (same shape as ``weight``, ``(out, in)``) minimising

    ``mean‖W' h_k − e_k‖² + hold · mean‖W' h_r − W h_r‖² + λ‖W' − W‖²``

    over kept features ``h_k`` with teacher embeddings ``e_k`` and removed features ``h_r`` (their embeddings under the
    trained ``W``), ``λ`` = ``RIDGE`` × the mean variance of ``h_k``. Solved in float64; returned in ``weight``'s dtype.
    """
    trained = weight.detach().double().cpu()
    kept, targets = kept_features.double().cpu(), teacher_embeddings.double().cpu()
    removed = removed_features.double().cpu()
    kept_moment = kept.T @ kept / len(kept)
    ridge = RIDGE * kept_moment.diagonal().mean()
    identity = torch.eye(trained.shape[1], dtype=torch.float64)
    lhs = kept_moment + hold * removed.T @ removed / len(removed) + ridge * identity
    rhs = targets.T @ kept / len(kept) + hold * (removed @ trained.T).T @ removed / len(removed) + ridge * trained
    return torch.linalg.solve(lhs, rhs.T).T.to(weight.dtype)
