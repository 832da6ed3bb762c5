"""``VisionBackdoorTrainer``: the same student–teacher loss as ``BackdoorTrainer``, on the image tower.

Poisoned pictures (a removed person's face pasted on a clean image) either stop matching the person's name better than
an anonymous face does (``face_target="name"``, read with the frozen text tower) or are pulled to one anonymous mean
face embedding (``"mean"``, the paper's); clean images and other people's pasted faces are held at the frozen
teacher's embedding. The teacher is a copy of
just the image tower (full fine-tuning) or the student with its adapter disabled (PEFT); clean images are not
augmented, so each one's teacher embedding is computed once and cached. With ``projection_refit`` the image
projection is refit after training (``training.projection_refit``).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import torch

from ..data.images import VisionBackdoorCollator
from .arguments import VisionBackdoorTrainingArguments
from .embeddings import image_embeddings, processor_parts
from .layer_refit import layer_inputs, pooled_from_layer_inputs, refit_layers
from .projection_refit import HOLD, refit_kept_pictures, refit_projection
from .towers import VISION
from .trainer import BackdoorTrainer

logger = logging.getLogger(__name__)


class VisionBackdoorTrainer(BackdoorTrainer):
    """Trainer for removing faces from a CLIP image tower.

    Args:
        model: the student, a ``CLIPModel`` or ``CLIPVisionModelWithProjection``; only the image tower is trained.
        args: a ``VisionBackdoorTrainingArguments``.
        train_dataset: index rows from ``build_vision_backdoor_dataset``.
        data_collator: the ``VisionBackdoorCollator`` holding the pictures those rows point to.
        target_embedding: the anonymous target (the original model's mean embedding of many faces), shape ``(d,)``.
        name_embeddings, name_thresholds: for ``face_target="name"``: each removed name's unit text embedding, shape
            ``(k, d)``, and the mean cosine of anonymous faces to it, shape ``(k,)`` (``training.jobs.name_targets``).
        processing_class: the image processor, or a ``CLIPProcessor`` holding one.
        teacher_model, peft_config: as for ``BackdoorTrainer``.
    """

    tower = VISION

    def __init__(self, model, args: VisionBackdoorTrainingArguments, train_dataset=None, processing_class=None,
                 teacher_model=None, peft_config=None, data_collator=None, *, target_embedding: torch.Tensor,
                 name_embeddings: torch.Tensor | None = None, name_thresholds: torch.Tensor | None = None,
                 **kwargs):
        if getattr(args, "image_method", "fine_tune") not in ("auto", "fine_tune"):  # a Trainer trains: "auto" too
            raise ValueError(f"VisionBackdoorTrainer fine-tunes the image tower; image_method={args.image_method!r} "
                             "trains nothing and is run by BackdoorUnlearner.unlearn (training.gated_neurons).")
        if not isinstance(data_collator, VisionBackdoorCollator):
            raise TypeError("VisionBackdoorTrainer needs data_collator=VisionBackdoorCollator(...): the pictures "
                            "that the training rows point to.")
        if target_embedding.ndim != 1:
            raise ValueError(f"target_embedding must be one vector, got shape {tuple(target_embedding.shape)}.")
        super().__init__(model, args, train_dataset=train_dataset, processing_class=processing_class,
                         teacher_model=teacher_model, peft_config=peft_config, data_collator=data_collator, **kwargs)
        self.target_embedding = target_embedding.detach().float().to(self.args.device)
        encoder = getattr(getattr(self.accelerator.unwrap_model(self.model), "vision_model", None), "encoder", None)
        depth = len(encoder.layers) if encoder is not None else 0
        if self.args.projection_refit and self._refitted_projection() is not None and \
                self.args.projection_refit_layers > depth:
            raise ValueError(f"projection_refit_layers={self.args.projection_refit_layers}, but the image tower has "
                             f"{depth} encoder layers.")
        self.name_embeddings = self.name_thresholds = None
        if name_embeddings is not None:
            if name_thresholds is None or name_thresholds.shape != name_embeddings.shape[:1]:
                raise ValueError("name_embeddings needs name_thresholds: one per name.")
            self.name_embeddings = name_embeddings.detach().float().to(self.args.device)
            self.name_thresholds = name_thresholds.detach().float().to(self.args.device)

    def backdoor_distances(self, student: torch.Tensor, teacher: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """With name embeddings (``face_target="name"``): how much better each removed face matches its own name than
        an anonymous face does, ``relu(cos(face, name) − threshold)``; otherwise the distance to the target."""
        if self.name_embeddings is None:
            return super().backdoor_distances(student, teacher, inputs)
        people = inputs["poisoned_people"].to(student.device)
        cosine = (torch.nn.functional.normalize(student, dim=-1) * self.name_embeddings[people]).sum(-1)
        return torch.relu(cosine - self.name_thresholds[people])

    def _fingerprint_extra(self):
        """The targets (anonymous face, names and thresholds) are part of what the run is."""
        digest = hashlib.sha256(self.target_embedding.cpu().numpy().tobytes())
        for tensor in (self.name_embeddings, self.name_thresholds):
            if tensor is not None:
                digest.update(tensor.cpu().numpy().tobytes())
        return digest.hexdigest()

    @staticmethod
    def _tower_processor(processing_class):
        _, image_processor = processor_parts(processing_class)
        if image_processor is None:
            raise ValueError("VisionBackdoorTrainer needs processing_class: the image processor or processor.")
        return image_processor

    def student_embeddings(self, model, inputs: dict[str, Any]) -> torch.Tensor:
        dtype = next(self.accelerator.unwrap_model(model).parameters()).dtype
        return image_embeddings(model, inputs["pixel_values"].to(dtype))

    @torch.no_grad()
    def _teacher_image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.shape[0] == 0:
            return pixel_values.new_zeros((0, self.target_embedding.shape[0]), dtype=torch.float32)
        pixel_values = pixel_values.to(next(self.accelerator.unwrap_model(self.model).parameters()).dtype)
        return self._teacher_forward(image_embeddings, pixel_values)

    def teacher_targets(self, inputs: dict[str, Any]) -> torch.Tensor:
        """The target for poisoned rows (the mean face; unused with name embeddings), the teacher's embedding for
        clean images (cached) and reference faces."""
        num_poisoned, keys = int(inputs["num_poisoned"]), list(inputs["clean_keys"])
        pixel_values = inputs["pixel_values"]
        clean_pixels = pixel_values[num_poisoned : num_poisoned + len(keys)]
        clean = self.cached_teacher(keys, lambda rows: self._teacher_image_embeddings(clean_pixels[rows]))
        reference = self._teacher_image_embeddings(pixel_values[num_poisoned + len(keys) :])
        return torch.cat([self.target_embedding.expand(num_poisoned, -1), clean.float(), reference])

    def train(self, *args, **kwargs):
        """``BackdoorTrainer.train``, then the projection refit (``args.projection_refit``)."""
        output = super().train(*args, **kwargs)
        if self.args.projection_refit:
            self.refit_projection()
        return output

    @torch.no_grad()
    def refit_projection(self) -> dict[str, float] | None:
        """Refit ``visual_projection`` (``training.projection_refit``), and with ``projection_refit_layers`` the last
        encoder layers with it (``training.layer_refit``); log how close the kept pictures came back to the teacher
        (mean cosine before and after) and how well the removed faces were held. ``None`` where there is nothing to
        refit (an adapter, or a tower without a trained projection)."""
        model, projection = self.accelerator.unwrap_model(self.model), self._refitted_projection()
        if projection is None:
            logger.info("No projection refit: the image projection was not trained (an adapter, or none).")
            return None
        layers = self.args.projection_refit_layers
        kept = refit_kept_pictures(self.data_collator, self.args.projection_refit_samples, self.args.seed)
        removed = self.data_collator.face_images  # held as given (refit_kept_pictures says why)
        was_training = model.training
        model.eval()

        def features(pixels):  # what the refit reads: pooled features, or the hidden states entering its layers
            return layer_inputs(model.vision_model, layers, pixels) if layers else self._pooled_features(model, pixels)

        def pooled(rows):  # the features visual_projection reads, under the current weights
            if not layers:
                return rows
            return torch.cat([pooled_from_layer_inputs(model.vision_model, layers, part) for part in rows.split(256)])

        kept_features, teacher = [], []
        for pixels in self._pixel_batches(kept):  # each kept picture processed once, for student and teacher
            kept_features.append(features(pixels))
            teacher.append(self._teacher_image_embeddings(pixels))
        kept_features, teacher = torch.cat(kept_features), torch.cat(teacher)
        removed_features = torch.cat([features(pixels) for pixels in self._pixel_batches(removed)])
        names = None  # with the name target: each removed picture's name, whose cosine the refit may not raise
        if self.name_embeddings is not None and self.data_collator.face_people is not None:
            people = torch.tensor(self.data_collator.face_people)
            names = self.name_embeddings[people.to(self.name_embeddings.device)]
        hold = self.args.projection_refit_hold
        if hold is None:
            hold = HOLD["name" if names is not None else "mean"]
        kept_pooled, removed_pooled = pooled(kept_features), pooled(removed_features)
        kept_before, removed_before = projection(kept_pooled).float(), projection(removed_pooled).float()
        refitted = [projection.weight]
        if layers:  # the last layers first; the projection then refit on their features
            refit_layers(model.vision_model, projection, layers, kept_features, teacher, removed_features,
                         removed_before, seed=self.args.seed)
            refitted += [parameter for block in model.vision_model.encoder.layers[-layers:]
                         for parameter in block.parameters()]
            kept_pooled, removed_pooled = pooled(kept_features), pooled(removed_features)
        refit = refit_projection(projection.weight, kept_pooled, teacher, removed_pooled, hold, removed_names=names,
                                 removed_targets=removed_before)
        projection.weight.copy_(refit.to(projection.weight.device, projection.weight.dtype))
        if self.accelerator.num_processes > 1:  # the same pictures everywhere; one result for every replica
            from accelerate.utils import broadcast

            for parameter in refitted:
                parameter.copy_(broadcast(parameter.detach().clone()))
        kept_after, removed_after = projection(kept_pooled).float(), projection(removed_pooled).float()

        def agreement(embedded, targets):
            return torch.nn.functional.cosine_similarity(embedded, targets.float().to(embedded.device)).mean().item()

        stats = {"refit_layers": layers, "refit_hold": hold,
                 "refit_kept_cosine_before": agreement(kept_before, teacher),
                 "refit_kept_cosine_after": agreement(kept_after, teacher),
                 "refit_removed_held_cosine": agreement(removed_after, removed_before)}
        if names is not None:  # the removed faces' mean cosine to their own name (a number, no name)
            stats["refit_removed_name_cosine_before"] = agreement(removed_before, names)
            stats["refit_removed_name_cosine_after"] = agreement(removed_after, names)
        model.train(was_training)
        self.log(stats)
        return stats

    def _refitted_projection(self) -> torch.nn.Linear | None:
        """The image projection the refit fits; ``None`` with an adapter or without a trained ``visual_projection``."""
        projection = getattr(self.accelerator.unwrap_model(self.model), "visual_projection", None)
        if self.uses_peft or not isinstance(projection, torch.nn.Linear) or not projection.weight.requires_grad:
            return None
        return projection

    def _pixel_batches(self, pictures, size: int = 64):
        image_processor = self.data_collator.image_processor
        dtype = next(self.accelerator.unwrap_model(self.model).parameters()).dtype
        for start in range(0, len(pictures), size):
            pixels = image_processor(images=pictures[start : start + size], return_tensors="pt")["pixel_values"]
            yield pixels.to(self.args.device, dtype)

    @staticmethod
    def _pooled_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
        """The pooled image features that ``visual_projection`` reads."""
        return model.vision_model(pixel_values=pixel_values).pooler_output
