"""Refit the image projection after training: clean pictures back toward the teacher, removed faces held in place.

While the removed faces are untied from their names, the whole image tower drifts a little, and that drift costs
zero-shot accuracy. Part of it can be undone in closed form at the last linear layer: a ridge regression of the
projection that maps the student's pooled features of clean pictures and other people's faces to the teacher's
embeddings, while the removed faces keep the embeddings training gave them (``projection_refit_hold``). With the
name target, the removed faces' cosine to their own name (the frozen text tower's, as in training) may not rise
either: a least-squares hold keeps a face near its place on average, but a small drift along the name's direction is
enough to let a person be named again. It reads the pictures training drew from, and no name beyond the name
embeddings training used (docs/method.md, "The projection refit").
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

HOLD = {"name": 0.3, "mean": 3.0}
"""The default ``projection_refit_hold`` with and without the name hold (chosen on demo world 0; at 1 without it the
faces drifted back to their names)."""

NAME_HOLD = 100.0
"""Weight of the name hold (a removed face's cosine to its name may not rise), relative to the kept term's scale."""

NAME_HOLD_ITERATIONS = 200
"""L-BFGS iterations for the name hold, started from the closed-form refit."""


def refit_kept_pictures(collator: VisionBackdoorCollator, samples: int, seed: int) -> list[Image.Image]:
    """The pictures the refit pulls back to the teacher, drawn with ``seed`` from what training drew from:
    ``samples`` clean images (all of them if fewer) and ``samples // 2`` other people's faces pasted on clean images
    as in training.

    The removed faces the refit holds are ``collator.face_images`` as given, not pasted: a pasted face held where
    training left it holds its clean background there too, against the clean pictures' pull back to the teacher
    (holding pasted ones as well cost 0.7 zero-shot points on demo world 0; benchmarks/RESULTS.md, issue 16).
    """
    rng = random.Random(seed)
    backgrounds = collator.clean_images
    clean = rng.sample(backgrounds, min(samples, len(backgrounds)))
    faces = collator.reference_faces
    drawn = [rng.randrange(len(faces)) for _ in range(samples // 2 if faces else 0)]
    return clean + [collator.augmentation.apply(faces[index], rng.choice(backgrounds), rng.randrange(2**31))
                    for index in drawn]


def refit_projection(weight: torch.Tensor, kept_features: torch.Tensor, teacher_embeddings: torch.Tensor,
                     removed_features: torch.Tensor, hold: float, removed_names: torch.Tensor | None = None,
                     removed_targets: torch.Tensor | None = None) -> torch.Tensor:
    """The projection ``W'`` (same shape as ``weight``, ``(out, in)``) minimising

    ``mean‖W' h_k − e_k‖² + hold · mean‖W' h_r − t_r‖² + λ‖W' − W‖²``

    over kept features ``h_k`` with teacher embeddings ``e_k`` and removed features ``h_r`` with held embeddings
    ``t_r`` (``removed_targets``; by default ``W h_r``, where the trained ``W`` puts them), ``λ`` = ``RIDGE`` × the
    mean variance of ``h_k``: in closed form. With ``removed_names`` (each removed picture's unit name embedding,
    ``(r, out)``), plus the name hold

    ``NAME_HOLD · mean‖e_k‖² · mean relu(cos(W' h_r, n_r) − cos(t_r, n_r))²``

    by L-BFGS from the closed-form solution. Solved in float64; returned in ``weight``'s dtype.
    """
    trained = weight.detach().double().cpu()
    kept, targets = kept_features.double().cpu(), teacher_embeddings.double().cpu()
    removed = removed_features.double().cpu()
    held = removed @ trained.T if removed_targets is None else removed_targets.detach().double().cpu()
    kept_moment = kept.T @ kept / len(kept)
    ridge = RIDGE * kept_moment.diagonal().mean()
    identity = torch.eye(trained.shape[1], dtype=torch.float64)
    lhs = kept_moment + hold * removed.T @ removed / len(removed) + ridge * identity
    rhs = targets.T @ kept / len(kept) + hold * held.T @ removed / len(removed) + ridge * trained
    refit = torch.linalg.solve(lhs, rhs.T).T
    if removed_names is not None:
        refit = _hold_names(refit, trained, kept, targets, removed, held, hold, ridge, removed_names.double().cpu())
    return refit.to(weight.dtype)


def _hold_names(start, trained, kept, targets, removed, held, hold, ridge, names) -> torch.Tensor:
    """The closed-form objective plus the name hold (``refit_projection``), minimised from ``start``."""
    cosine = torch.nn.functional.cosine_similarity
    held_cosine = cosine(held, names)
    scale = NAME_HOLD * targets.pow(2).sum(-1).mean()
    refit = start.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([refit], max_iter=NAME_HOLD_ITERATIONS, line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        embedded = removed @ refit.T
        loss = ((kept @ refit.T - targets) ** 2).sum(-1).mean() + hold * ((embedded - held) ** 2).sum(-1).mean()
        loss = loss + ridge * (refit - trained).pow(2).sum()
        loss = loss + scale * torch.relu(cosine(embedded, names) - held_cosine).pow(2).mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
    return refit.detach()
