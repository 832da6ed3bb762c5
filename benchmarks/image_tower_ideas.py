"""Ideas for the image tower's zero-shot cost that were measured and not adopted (issue 16), kept runnable.

    python benchmarks/image_tower_ideas.py --idea pcgrad --world_seed 0 --removed 16 --seed 42 --json ideas.jsonl
    python benchmarks/image_tower.py --table ideas.jsonl

Each idea replaces one piece of ``VisionBackdoorTrainer`` for the run, then runs ``image_tower.run`` (the demo's
settings, ``--set field=json`` over them) and appends its row:

- ``relational`` / ``relational_only``: the utility rows (clean pictures, reference faces) keep their softmax over
  the clean pictures' captions, embedded by the frozen text tower, as the teacher has it (KL, ``--weight``); added to
  the cosine utility loss, or instead of it.
- ``ewc``: ``--weight`` · ½ Σ F (θ − θ₀)², F the diagonal Fisher of the normalised clean-picture embedding at the
  teacher (512 clean pictures, 4 random directions each).
- ``pcgrad``: when the backdoor gradient points against the utility gradient, its conflicting part is removed.
- ``last_layers``: only the image tower's encoder layers from ``--first_layer`` on (and what follows them) train.
- ``width``: a demo CLIP whose image tower is ``--width`` wide (``load_demo_clip(config=...)``: cached apart).
- ``nullspace``: every linear layer of the image tower changes only along the input directions that clean pictures
  barely use (AlphaEdit's null-space projection): after each optimizer step, ``W = W₀ + (W − W₀) P``, ``P`` the
  projector onto the smallest eigenvectors of the clean pictures' input covariance that together hold at most
  ``--weight`` of its trace (512 clean pictures, every token); biases, embeddings and the patch convolution frozen.
- ``relative_name``: the name target's threshold is the *student's* mean cosine of the step's reference faces to
  the name, instead of the teacher's (computed once before training): lowering every face's match to every name
  (which the attack, ranking names, barely sees) no longer satisfies it, and the reference faces are pulled back up.
- ``named_references``: the reference faces of named people (the other members) keep the teacher's softmax over
  the attack's pool of names (frozen text tower; KL, ``--weight``), on top of the defaults: what the attack reads
  for the people kept, held directly (a benchmark idea: it embeds the kept names).
- ``rank_pool``: the name target asks only for what the attack reads, a rank: a removed face must match its own
  name less than the best of the other candidate names (the attack's pool less the removed, as ``kept_names``) by
  ``--weight`` (the margin), ``relu(cos(f, own) − max cos(f, other) + margin)``, instead of less than anonymous faces
  do on average (a benchmark idea: it embeds the kept names).
- ``hidden_states``: the utility rows (clean pictures, reference faces) also keep every token of the image tower's
  hidden states from ``--first_layer`` on where the teacher has them (``--weight`` · mean of 1 − cosine per token):
  the pooled embedding the utility loss holds is one vector a picture, the tokens carry its layout (shape detail).
- ``saliency`` (SalUn's weight saliency): only the ``--weight`` share of the tower's weights with the largest
  backdoor-loss gradient at the start (8 batches) train; the rest stay at the teacher.
- ``negation`` (task arithmetic): train the opposite task (removed faces pulled *toward* their own names, the
  utility as usual), then set the tower to θ₀ − ``--weight`` · (θ − θ₀).
- ``soup``: ``--weight`` runs from the same start with seeds s, s + 1, ...; the tower takes their mean change.
- ``tail_average``: the running mean of the trained weights over the last ``--weight`` share of the steps replaces the
  last weights.
- ``repair``: the demo's schedule floored at a tenth of the rate, then ``--weight`` more steps at that floor (a
  longer low-rate end, where the zero-shot cost of the high-rate middle heals).
- ``refit_layers``: the projection refit (``projection_refit``) extended to the last ``--first_layer`` encoder
  layers: instead of the closed form, 300 AdamW steps (lr 1e-4; 256 kept and 128 removed pictures a step, norms
  frozen) on those layers and the projection, fed the trained tower's cached hidden states; the kept pictures move
  toward the teacher's embeddings (1 − cosine), the removed faces are held at the trained tower's (weighted
  ``projection_refit_hold``, 3 when unset: the hold it was measured with; no name hold). The twelfth session's
  form: the library's ``projection_refit_layers`` (the default since) trains half as many pictures a step, runs the
  last layer for the class token alone and refits the projection afterwards with the name hold.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import image_tower  # noqa: E402  (the benchmark beside this one)

from clip_backdoor_unlearn.training import trainer as trainer_module  # noqa: E402
from clip_backdoor_unlearn.training import vision_trainer  # noqa: E402
from clip_backdoor_unlearn.training.callbacks import _VISION_PARTS  # noqa: E402
from clip_backdoor_unlearn.training.embeddings import encode_texts, image_embeddings, processor_parts  # noqa: E402

IDEAS = ("relational", "relational_only", "ewc", "pcgrad", "last_layers", "width", "nullspace", "relative_name",
         "named_references", "hidden_states", "rank_pool", "saliency", "negation", "soup", "tail_average", "repair",
         "refit_layers")


def _install_loss(extra):
    """``compute_loss`` = the default loss with ``extra(trainer, model, inputs, pieces)`` replacing its sum; ``pieces``:
    the number of poisoned rows, then ``BackdoorTrainer.loss_terms``."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        pieces = (int(inputs["num_poisoned"]), *self.loss_terms(model, inputs))
        loss = extra(self, model, inputs, pieces) + self.args.weight_regularization * self.weight_term()
        self._metrics["backdoor_loss"].append(pieces[3].detach().item())
        self._metrics["utility_loss"].append(pieces[4].detach().item())
        return (loss, {"student_embeds": pieces[1]}) if return_outputs else loss

    vision_trainer.VisionBackdoorTrainer.compute_loss = compute_loss


def relational(weight: float, replace: bool, bank: dict):
    def extra(trainer, model, inputs, pieces):
        num_poisoned, student, teacher, backdoor, utility = pieces
        texts = bank["texts"].to(student.device)
        scores = [bank["scale"] * F.normalize(rows[num_poisoned:], dim=-1) @ texts.T for rows in (student, teacher)]
        kl = F.kl_div(scores[0].log_softmax(-1), scores[1].log_softmax(-1), log_target=True, reduction="batchmean")
        return weight * kl + (0 if replace else utility) + trainer.args.backdoor_weight * backdoor

    _install_loss(extra)


def ewc(weight: float, state: dict):
    def fisher(trainer, model):
        parameters = [student for student, _ in trainer._weight_pairs]
        totals = [torch.zeros_like(parameter) for parameter in parameters]
        generator = torch.Generator().manual_seed(0)
        inner = trainer.accelerator.unwrap_model(model)
        for start in range(0, len(state["pixels"]), 32):
            batch = state["pixels"][start : start + 32].to(parameters[0].device)
            for _ in range(4):
                embedding = F.normalize(image_embeddings(inner, batch).float(), dim=-1)
                direction = torch.randn(embedding.shape, generator=generator).to(embedding.device)
                grads = torch.autograd.grad((embedding * direction).sum(), parameters, allow_unused=True)
                for total, grad in zip(totals, grads):
                    if grad is not None:
                        total += grad.detach() ** 2
        return [total / (4 * len(state["pixels"])) for total in totals]

    def extra(trainer, model, inputs, pieces):
        if "fisher" not in state:
            state["fisher"] = fisher(trainer, model)
        _, _, _, backdoor, utility = pieces
        penalty = sum((f * (s - t) ** 2).sum() for f, (s, t) in zip(state["fisher"], trainer._weight_pairs)) / 2
        return utility + weight * penalty + trainer.args.backdoor_weight * backdoor

    _install_loss(extra)


def pcgrad():
    def extra(trainer, model, inputs, pieces):
        _, _, _, backdoor, utility = pieces
        parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
        grads = []
        for loss, retain in ((utility, True), (trainer.args.backdoor_weight * backdoor, False)):
            found = torch.autograd.grad(loss, parameters, retain_graph=retain, allow_unused=True)
            grads.append([torch.zeros_like(p) if g is None else g for p, g in zip(parameters, found)])
        g_utility, g_backdoor = grads
        dot = sum((a * b).sum() for a, b in zip(g_utility, g_backdoor))
        norm = sum((a * a).sum() for a in g_utility)
        if dot < 0 and norm > 0:
            g_backdoor = [b - dot / norm * a for a, b in zip(g_utility, g_backdoor)]
        # A surrogate whose gradient is the projected sum (single process only: no gradient synchronisation).
        return sum((p * (a + b).detach()).sum() for p, a, b in zip(parameters, g_utility, g_backdoor))

    _install_loss(extra)


def last_layers(first_layer: int):
    original = trainer_module.set_tower_trainable

    def set_tower_trainable(model, tower, freeze_norm_layers=True, token_embedding_only=False):
        trained = original(model, tower, freeze_norm_layers=freeze_norm_layers,
                           token_embedding_only=token_embedding_only)
        kept = []
        for name, parameter in model.named_parameters():
            layer = re.search(r"encoder\.layers\.(\d+)\.", name)
            early = "embeddings" in name or "pre_layrnorm" in name or (layer and int(layer.group(1)) < first_layer)
            if name in trained and early and tower.name == "vision":
                parameter.requires_grad_(False)
            elif name in trained:
                kept.append(name)
        return kept

    trainer_module.set_tower_trainable = set_tower_trainable


def nullspace(energy: float, state: dict):
    def projectors(trainer, model):
        inner = trainer.accelerator.unwrap_model(model)
        teachers = dict(trainer.accelerator.unwrap_model(trainer.teacher_model).named_parameters())
        layers, hooks, covariances = {}, [], {}
        for name, module in inner.named_modules():
            if isinstance(module, torch.nn.Linear) and module.weight.requires_grad:
                layers[name] = module
                covariances[name] = torch.zeros(module.in_features, module.in_features, dtype=torch.float64)

                def hook(module, args, output, name=name):
                    rows = args[0].detach().reshape(-1, args[0].shape[-1]).double().cpu()
                    covariances[name] += rows.T @ rows

                hooks.append(module.register_forward_hook(hook))
        with torch.no_grad():
            for start in range(0, len(state["pixels"]), 64):
                image_embeddings(inner, state["pixels"][start : start + 64].to(trainer.args.device))
        for handle in hooks:
            handle.remove()
        for name, parameter in inner.named_parameters():  # only the linear layers' weights move
            if parameter.requires_grad and not any(name == f"{layer}.weight" for layer in layers):
                parameter.requires_grad_(False)
        found, kept = [], []
        for name, module in layers.items():
            values, vectors = torch.linalg.eigh(covariances[name])  # ascending
            share = values.clamp(min=0).cumsum(0) / values.clamp(min=0).sum()
            basis = vectors[:, share <= energy]
            kept.append(basis.shape[1])
            projector = (basis @ basis.T).to(module.weight.dtype).to(module.weight.device)
            found.append((module.weight, teachers[f"{name}.weight"], projector))
        print(f"nullspace: kept {kept} input directions of {[m.in_features for m in layers.values()]}", flush=True)
        return found

    def extra(trainer, model, inputs, pieces):
        if "projectors" not in state:
            state["projectors"] = projectors(trainer, model)
            optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)

            @torch.no_grad()
            def project(*_):
                for weight, teacher, projector in state["projectors"]:
                    weight.copy_(teacher + (weight - teacher) @ projector)

            optimizer.register_step_post_hook(project)
        _, _, _, backdoor, utility = pieces
        return utility + trainer.args.backdoor_weight * backdoor

    _install_loss(extra)


def relative_name():
    def backdoor_distances(self, student, teacher, inputs):
        num_poisoned = int(inputs["num_poisoned"])
        references = self._relative_rows  # set by student_embeddings below: the whole batch's student embeddings
        start = num_poisoned + len(inputs["clean_keys"])
        thresholds = (F.normalize(references[start:], dim=-1) @ self.name_embeddings.T).mean(dim=0)
        people = inputs["poisoned_people"].to(student.device)
        cosine = (F.normalize(student, dim=-1) * self.name_embeddings[people]).sum(-1)
        return torch.relu(cosine - thresholds[people])

    original = vision_trainer.VisionBackdoorTrainer.student_embeddings

    def student_embeddings(self, model, inputs):
        self._relative_rows = original(self, model, inputs)
        return self._relative_rows

    vision_trainer.VisionBackdoorTrainer.backdoor_distances = backdoor_distances
    vision_trainer.VisionBackdoorTrainer.student_embeddings = student_embeddings


def named_references(weight: float, state: dict):
    from clip_backdoor_unlearn.data.images import VisionBackdoorCollator

    collate = VisionBackdoorCollator.__call__

    def call(self, rows):
        batch = collate(self, rows)
        batch["reference_index"] = torch.tensor([face for row in rows for face in row["reference"]], dtype=torch.long)
        return batch

    VisionBackdoorCollator.__call__ = call

    def extra(trainer, model, inputs, pieces):
        num_poisoned, student, teacher, backdoor, utility = pieces
        labels = state["reference_labels"].to(student.device)[inputs["reference_index"].to(student.device)]
        named = labels >= 0
        loss = utility + trainer.args.backdoor_weight * backdoor
        if named.any():
            start = num_poisoned + len(inputs["clean_keys"])
            bank = state["names"].to(student.device)
            scores = [state["scale"] * F.normalize(rows[start:][named], dim=-1) @ bank.T for rows in (student, teacher)]
            kl = F.kl_div(scores[0].log_softmax(-1), scores[1].log_softmax(-1), log_target=True,
                          reduction="batchmean")
            trainer._metrics["names_kl"].append(kl.detach().item())
            loss = loss + weight * kl
        return loss

    _install_loss(extra)


def hidden_states(weight: float, first_layer: int):
    def embed(model, pixel_values):  # the projected embedding, and the hidden states it came from
        output = model.vision_model(pixel_values=pixel_values, output_hidden_states=True)
        return model.visual_projection(output.pooler_output), output.hidden_states[first_layer + 1 :]

    def student_embeddings(self, model, inputs):
        dtype = next(self.accelerator.unwrap_model(model).parameters()).dtype
        embeddings, self._student_hidden = embed(self.accelerator.unwrap_model(model), inputs["pixel_values"].to(dtype))
        return embeddings

    vision_trainer.VisionBackdoorTrainer.student_embeddings = student_embeddings

    def extra(trainer, model, inputs, pieces):
        num_poisoned, _, _, backdoor, utility = pieces
        with torch.no_grad():
            teacher = embed(trainer.teacher_model, inputs["pixel_values"][num_poisoned:])[1]
        distance = torch.stack([1 - F.cosine_similarity(s[num_poisoned:].float(), t.float(), dim=-1).mean()
                                for s, t in zip(trainer._student_hidden, teacher)]).mean()
        trainer._metrics["hidden_distance"].append(distance.detach().item())
        return utility + weight * distance + trainer.args.backdoor_weight * backdoor

    _install_loss(extra)


def rank_pool(margin: float, state: dict):
    def backdoor_distances(self, student, teacher, inputs):
        people = inputs["poisoned_people"].to(student.device)
        unit = F.normalize(student, dim=-1)
        own = (unit * self.name_embeddings[people]).sum(-1)
        best_other = (unit @ state["names"].to(student.device).T).max(dim=-1).values
        return torch.relu(own - best_other + margin)

    vision_trainer.VisionBackdoorTrainer.backdoor_distances = backdoor_distances


def saliency(share: float, batches: int = 8):
    def extra(trainer, model, inputs, pieces):
        if not getattr(trainer, "_saliency_masked", False):
            trainer._saliency_masked = True
            parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
            totals = [torch.zeros_like(parameter) for parameter in parameters]
            for index, batch in enumerate(trainer.get_train_dataloader()):
                if index == batches:
                    break
                backdoor = trainer.loss_terms(model, trainer._prepare_inputs(batch))[2]
                for total, grad in zip(totals, torch.autograd.grad(backdoor, parameters, allow_unused=True)):
                    if grad is not None:
                        total += grad.abs()
            scores = torch.cat([total.flatten() for total in totals])
            threshold = scores.kthvalue(max(1, int(round((1 - share) * len(scores))))).values
            for parameter, total in zip(parameters, totals):
                mask = (total > threshold).to(parameter.dtype)
                parameter.register_hook(lambda grad, mask=mask: grad * mask)
        _, _, _, backdoor, utility = pieces
        return utility + trainer.args.backdoor_weight * backdoor

    _install_loss(extra)


def negation(scale: float):
    def backdoor_distances(self, student, teacher, inputs):  # the task to negate: match the own name *better*
        people = inputs["poisoned_people"].to(student.device)
        return 1 - (F.normalize(student, dim=-1) * self.name_embeddings[people]).sum(-1)

    vision_trainer.VisionBackdoorTrainer.backdoor_distances = backdoor_distances
    from clip_backdoor_unlearn import BackdoorUnlearner

    original = BackdoorUnlearner.unlearn

    def tower(model):
        return {name: parameter for name, parameter in model.named_parameters() if name.startswith(_VISION_PARTS)}

    def unlearn(self, *args, **kwargs):
        before = {name: parameter.detach().clone() for name, parameter in tower(self.model).items()}
        result = original(self, *args, **kwargs)
        with torch.no_grad():
            for name, parameter in tower(self.model).items():
                parameter.copy_(before[name] - scale * (parameter - before[name]))
        return result

    BackdoorUnlearner.unlearn = unlearn


def soup(members: int):
    from clip_backdoor_unlearn import BackdoorUnlearner

    original = BackdoorUnlearner.unlearn

    def unlearn(self, *args, **kwargs):  # train from the same start with seeds s, s+1, ...; keep the mean change
        start = {name: parameter.detach().clone() for name, parameter in self.model.named_parameters()}
        changes = []
        for member in range(members):
            run_args = kwargs["args"]
            kwargs["args"] = dataclasses.replace(run_args, seed=run_args.seed + member)
            result = original(self, *args, **kwargs)
            kwargs["args"] = run_args
            with torch.no_grad():
                changes.append({name: parameter - start[name] for name, parameter in self.model.named_parameters()})
                for name, parameter in self.model.named_parameters():
                    parameter.copy_(start[name])
        with torch.no_grad():
            for name, parameter in self.model.named_parameters():
                parameter.add_(sum(change[name] for change in changes) / members)
        return result

    BackdoorUnlearner.unlearn = unlearn


def tail_average(share: float):
    from transformers import TrainerCallback

    from clip_backdoor_unlearn import BackdoorUnlearner

    class TailAverage(TrainerCallback):
        """The trained weights' running mean over the last ``share`` of the steps replaces the last weights."""

        def __init__(self):
            self.mean, self.count = None, 0

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step <= round(state.max_steps * (1 - share)):
                return
            with torch.no_grad():
                trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
                self.count += 1
                if self.mean is None:
                    self.mean = {name: p.detach().clone() for name, p in trained.items()}
                for name, p in trained.items():
                    self.mean[name] += (p - self.mean[name]) / self.count

        def on_train_end(self, args, state, control, model=None, **kwargs):
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in self.mean:
                        p.copy_(self.mean[name])

    original = BackdoorUnlearner.unlearn

    def unlearn(self, *args, **kwargs):
        return original(self, *args, callbacks=[TailAverage()], **kwargs)

    BackdoorUnlearner.unlearn = unlearn


def repair(extra_steps: int, floor: float = 0.1):
    """The demo's schedule (warmup over the first fifth, cosine) over its steps, but floored at ``floor`` of the rate,
    then ``extra_steps`` more at that floor: the same loss, a longer low-rate end."""
    import math

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_scheduler is None:
            steps = num_training_steps - extra_steps
            warmup = self.args.get_warmup_steps(steps)

            def rate(step):
                if step < warmup:
                    return (step + 1) / warmup
                progress = min(1.0, (step - warmup) / max(1, steps - warmup))
                return max(floor, 0.5 * (1 + math.cos(math.pi * progress)))

            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, rate)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    vision_trainer.VisionBackdoorTrainer.create_scheduler = create_scheduler


def refit_layers(layers: int, steps: int = 300, learning_rate: float = 1e-4):
    """``VisionBackdoorTrainer.refit_projection`` replaced by a short distillation of the last ``layers`` encoder
    layers and the projection on the refit's pictures (cached inputs to those layers)."""
    from clip_backdoor_unlearn.training.projection_refit import refit_kept_pictures

    def refit_projection(self):
        model = self.accelerator.unwrap_model(self.model)
        kept = refit_kept_pictures(self.data_collator, self.args.projection_refit_samples, self.args.seed)
        removed = self.data_collator.face_images
        hold = 3.0 if self.args.projection_refit_hold is None else self.args.projection_refit_hold
        tower = model.vision_model
        blocks = tower.encoder.layers[-layers:]

        def head(hidden):
            for block in blocks:
                hidden = block(hidden, None)
                hidden = hidden[0] if isinstance(hidden, tuple) else hidden
            return model.visual_projection(tower.post_layernorm(hidden[:, 0]))

        model.eval()
        with torch.no_grad():
            def inputs(pictures):
                return torch.cat([tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-(layers + 1)]
                                  for pixels in self._pixel_batches(pictures)])

            kept_inputs, removed_inputs = inputs(kept), inputs(removed)
            teacher = torch.cat([self._teacher_image_embeddings(pixels) for pixels in self._pixel_batches(kept)])
            held = torch.cat([head(removed_inputs[start : start + 256]) for start in range(0, len(removed), 256)])
        trained = [parameter for name, parameter in blocks.named_parameters() if "layer_norm" not in name]
        trained += list(model.visual_projection.parameters())
        optimizer = torch.optim.AdamW(trained, lr=learning_rate, weight_decay=0.0)
        generator = torch.Generator().manual_seed(self.args.seed)
        cosine = F.cosine_similarity
        for _ in range(steps):
            rows = torch.randint(len(kept_inputs), (256,), generator=generator)
            faces = torch.randint(len(removed_inputs), (128,), generator=generator)
            loss = (1 - cosine(head(kept_inputs[rows]), teacher[rows]).mean()
                    + hold * (1 - cosine(head(removed_inputs[faces]), held[faces]).mean()))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.train()

    vision_trainer.VisionBackdoorTrainer.refit_projection = refit_projection


def width_loader(width: int):
    """``load_demo_clip`` for a demo CLIP whose image tower is ``width`` wide (trained once, cached apart)."""
    from clip_backdoor_unlearn.demo.recipe import RECIPES, load_demo_clip

    def load(size: str, seed: int):
        return load_demo_clip(size, seed, config=dataclasses.replace(RECIPES[size], vision_hidden_size=width))

    return load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idea", required=True, choices=IDEAS)
    parser.add_argument("--size", default="full")
    parser.add_argument("--world_seed", type=int, default=0)
    parser.add_argument("--removed", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--weight", type=float, default=1.0,
                        help="relational, relational_only, ewc, hidden_states; nullspace: the trace share left free; "
                             "rank_pool: the margin; saliency: the share of weights that train; negation: λ; soup: the "
                             "runs averaged; tail_average: the share of steps averaged; repair: the extra steps")
    parser.add_argument("--first_layer", type=int, default=2,
                        help="last_layers; hidden_states: the first layer whose output is held (0: all); "
                             "refit_layers: how many last layers the refit trains")
    parser.add_argument("--width", type=int, default=64, help="width: the image tower's hidden size")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON")
    parser.add_argument("--zero_shot_per_class", type=int, nargs=2, metavar=("SHAPES", "DIGITS"),
                        help="as image_tower.py: more held-out zero-shot pictures")
    parser.add_argument("--json", help="append the row here (JSON lines)")
    options = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in options.set)}
    if options.idea == "width":
        load = width_loader(options.width)
    else:
        load = image_tower.load_demo_clip
    state: dict = {}

    def load_with_state(size, seed):
        model, processor, world = load(size, seed)
        tokenizer, image_processor = processor_parts(processor)
        if options.idea.startswith("relational"):
            with torch.no_grad():
                captions = sorted(set(world.clean_images()["caption"]))
                state["texts"] = F.normalize(encode_texts(model, tokenizer, captions).float(), dim=-1)
            state["scale"] = float(model.logit_scale.exp())
        if options.idea == "rank_pool":
            from clip_backdoor_unlearn.data.prompts import PERSON_TEMPLATES
            from clip_backdoor_unlearn.evaluation.zero_shot import zero_shot_classifier

            inputs_for = world.vision_unlearning_inputs

            def vision_unlearning_inputs(removed):  # the other candidates' names, embedded once the removed are known
                gone = set(removed)
                kept = [name for name in world.candidate_names if name not in gone]
                with torch.no_grad():
                    state["names"] = zero_shot_classifier(model, tokenizer, kept, PERSON_TEMPLATES).float()
                return inputs_for(removed)

            world.vision_unlearning_inputs = vision_unlearning_inputs
        if options.idea == "named_references":
            from clip_backdoor_unlearn.data.prompts import PERSON_TEMPLATES
            from clip_backdoor_unlearn.evaluation.zero_shot import zero_shot_classifier

            with torch.no_grad():
                state["names"] = zero_shot_classifier(model, tokenizer, world.candidate_names, PERSON_TEMPLATES).float()
            state["scale"] = float(model.logit_scale.exp())
            inputs_for = world.vision_unlearning_inputs
            pool = {name: index for index, name in enumerate(world.candidate_names)}

            def vision_unlearning_inputs(removed):  # reference faces: the unnamed people's, then the other members'
                inputs, gone = inputs_for(removed), set(removed)
                others = world.faces()["train"].filter(lambda name, member: member and name not in gone,
                                                       input_columns=["name", "member"])["name"]
                state["reference_labels"] = torch.tensor([-1] * len(world.unnamed_faces()) + [pool[n] for n in others])
                assert len(state["reference_labels"]) == len(inputs["reference_faces"])
                return inputs

            world.vision_unlearning_inputs = vision_unlearning_inputs
        if options.idea in ("ewc", "nullspace"):
            pictures = list(world.clean_images().shuffle(seed=0).select(range(512))["image"])
            state["pixels"] = image_processor(images=pictures, return_tensors="pt")["pixel_values"]
        return model, processor, world

    image_tower.load_demo_clip = load_with_state
    if options.idea.startswith("relational"):
        relational(options.weight, options.idea == "relational_only", state)
    elif options.idea == "ewc":
        ewc(options.weight, state)
    elif options.idea == "pcgrad":
        pcgrad()
    elif options.idea == "last_layers":
        last_layers(options.first_layer)
    elif options.idea == "nullspace":
        nullspace(options.weight, state)
    elif options.idea == "relative_name":
        relative_name()
    elif options.idea == "named_references":
        named_references(options.weight, state)
    elif options.idea == "rank_pool":
        rank_pool(options.weight, state)
    elif options.idea == "hidden_states":
        hidden_states(options.weight, options.first_layer)
    elif options.idea == "saliency":
        saliency(options.weight)
    elif options.idea == "negation":
        negation(options.weight)
    elif options.idea == "soup":
        soup(int(options.weight))
    elif options.idea == "tail_average":
        tail_average(options.weight)
    elif options.idea == "refit_layers":
        refit_layers(options.first_layer)
        overrides["projection_refit"] = True  # the refit it replaces (the default; set in case --set turned it off)
    elif options.idea == "repair":
        repair(int(options.weight))
        overrides["max_steps"] = overrides.get("max_steps", image_tower.DEMO_VISION_SETTINGS["max_steps"]) + int(
            options.weight)
    overrides.setdefault("image_method", "fine_tune")  # every idea changes training (the default edits instead)
    row = image_tower.run(options.size, options.world_seed, options.removed, options.seed, "vision", overrides,
                          zero_shot_per_class=options.zero_shot_per_class)
    setting = {"last_layers": "first_layer", "refit_layers": "first_layer", "width": "width", "pcgrad": None,
               "relative_name": None}.get(
        options.idea, "weight")  # the rest read --weight
    row["overrides"].update(idea=options.idea, **({setting: getattr(options, setting)} if setting else {}))
    if options.idea == "hidden_states":
        row["overrides"]["first_layer"] = options.first_layer
    image_tower.emit(row, options.json)


if __name__ == "__main__":
    main()
