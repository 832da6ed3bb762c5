"""The paper's plain training loop against ``BackdoorTrainer`` (full fine-tuning and LoRA), per optimisation step.

    python benchmarks/bench_plain_loop.py                       # ViT-B/32 and ViT-L/14 text towers
    python benchmarks/bench_plain_loop.py --sizes tiny --steps 3   # a smoke test in seconds

Variants, all on the same batches (128 poisoned + 128 clean captions a step, the rows ``unlearn`` builds for the
same names, captions and seed; the script checks that the measured rows are identical) and the same threads:

* ``plain``: the reference implementation's loop written out in PyTorch. Every prompt padded to 77 tokens (as
  open_clip's tokenizer does, no padding mask), the frozen teacher (a full copy) run under ``no_grad`` on the clean
  and the target captions at every step, separate student passes for clean and poisoned captions, full fine-tuning
  with LayerNorms frozen, AdamW lr 1e-4, loss L_util + 0.6·L_bd + 0.01·Σ‖θs−θt‖ over all parameters (negative
  cosine on the pooled projected embedding), MultiStepLR, the losses read back with ``.item()`` for logging.
* ``ours full``: ``BackdoorUnlearner.unlearn(...)`` as a user calls it (dynamic padding, teacher embeddings
  cached per distinct prompt, one student pass), lr 1e-4.
* ``ours LoRA``: the same with ``peft_config=LoraConfig(r=16, lora_alpha=32)``, lr 1e-3.

Each variant runs in its own subprocess, so memory figures are not shared. Seconds per step: the median over the
measured steps of the time from the end of one optimisation step to the end of the next (for the Trainer this
includes collating the batch and the Trainer's own bookkeeping; read at ``on_step_end`` of a callback), after the
warm-up steps. Tokens: ``input_ids`` elements (padding included) fed to the student's and the teacher's embedding
layer per step, counted by a forward pre-hook (a pass under ``no_grad`` is the teacher's). Memory on CPU: the
peak resident set size during the step (Linux ``VmHWM``, reset at the end of every step through
``/proc/self/clear_refs``) minus the RSS after building the model, i.e. everything training adds: the teacher copy,
optimizer state, gradients, activations (torch 2.13 has no CPU allocator statistics: ``torch.accelerator`` memory
functions need an accelerator). glibc keeps freed pages, so these are upper bounds. On a GPU,
``torch.cuda.max_memory_allocated`` per step (reset at the end of every step) is reported too.

The tokenizer is learned offline from the package's caption set (about 1k tokens instead of CLIP's 49k: the
embedding table is smaller, the transformer is the real size); weights are random, which does not change the cost.
"""

from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from machine import cpu_model

NAMES = ["Ada Lovelace", "Zorbo Quill", "Mira Fenwick", "Olek Brandt"]
NUM_TRAIN_CAPTIONS = 1500  # as bench_text_step.py: the rest of default_captions() is held out there
CONTEXT_LENGTH = 77
VARIANTS = ("plain", "ours full", "ours LoRA")
PLAIN_WARMUP = 2  # the plain loop keeps no state worth warming beyond the optimizer's: 2 steps are enough
SPLIT_BELOW_GIB = 32


# Measurement helpers ------------------------------------------------------------------------------------------------

def _status_mib(field: str, path: str = "/proc/self/status") -> float:
    with open(path) as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE).group(1)) / 1024


def _meminfo_mib(field: str) -> float:
    return _status_mib(field, "/proc/meminfo")


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


class StepProbe:
    """Per optimisation step: wall time end-to-end, peak RSS, peak CUDA memory, tokens fed to student and teacher."""

    def __init__(self, device):
        import torch

        self.torch = torch
        self.cuda = device.type == "cuda"
        self.records: list[dict] = []
        self.last_end: float | None = None
        self.student_tokens = self.teacher_tokens = 0
        self.hwm_resettable = True
        self.hooks: list = []

    def _sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def _reset(self):
        self.hwm_resettable = _reset_peak_rss() and self.hwm_resettable
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        self.student_tokens = self.teacher_tokens = 0

    def count_tokens(self, module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is not None:
            if self.torch.is_grad_enabled():
                self.student_tokens += input_ids.numel()
            else:
                self.teacher_tokens += input_ids.numel()

    def watch(self, *models):
        """Count tokens entering every CLIP text embedding layer of ``models``."""
        from transformers.models.clip.modeling_clip import CLIPTextEmbeddings

        seen = set()
        for model in models:
            for module in model.modules():
                if isinstance(module, CLIPTextEmbeddings) and id(module) not in seen:
                    seen.add(id(module))
                    self.hooks.append(module.register_forward_pre_hook(self.count_tokens, with_kwargs=True))

    def unwatch(self):
        for hook in self.hooks:
            hook.remove()
        self.hooks.clear()

    def begin(self):
        if self.last_end is None:  # the first step: from here; later steps run from the previous step's end
            self._sync()
            self._reset()
            self.last_end = time.perf_counter()

    def end(self):
        self._sync()
        now = time.perf_counter()
        self.records.append({
            "seconds": now - self.last_end,
            "peak_rss_mib": _status_mib("VmHWM"),
            "cuda_peak_mib": self.torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None,
            "student_tokens": self.student_tokens,
            "teacher_tokens": self.teacher_tokens,
        })
        self._reset()
        self.last_end = time.perf_counter()


def _rows_digest(poisoned, targets, clean) -> str:
    return hashlib.sha256(json.dumps([poisoned, targets, clean]).encode()).hexdigest()[:16]


def _step_rows(dataset, step: int, poisoned_per_step: int):
    rows = dataset[step * poisoned_per_step:(step + 1) * poisoned_per_step]
    return rows["poisoned"], rows["target"], [caption for group in rows["clean"] for caption in group]


# The variants (each runs in a child process) ----------------------------------------------------------------------

def _setup(spec):
    import torch
    from transformers import CLIPTextModelWithProjection

    from clip_backdoor_unlearn.data.captions import default_captions
    from clip_backdoor_unlearn.demo.tiny import build_tokenizer, tiny_clip_config

    torch.set_num_threads(spec["threads"])
    captions = list(default_captions())
    tokenizer = build_tokenizer(captions + NAMES, vocab_size=2048)
    torch.manual_seed(0)
    model = CLIPTextModelWithProjection(tiny_clip_config(len(tokenizer), size=spec["size"]).text_config).eval()
    gc.collect()
    return model, tokenizer, captions[:NUM_TRAIN_CAPTIONS]


def _unlearn_overrides(spec, total_steps: int, output_dir: str) -> dict:
    return dict(max_steps=total_steps, seed=0, output_dir=output_dir, disable_tqdm=True, logging_steps=total_steps,
                learning_rate=1e-3 if spec["variant"] == "ours LoRA" else 1e-4,
                poisoned_samples_per_step=spec["poisoned"], clean_samples_per_step=spec["clean"])


def run_ours(spec, model, tokenizer, captions, device) -> dict:
    from transformers import TrainerCallback

    from clip_backdoor_unlearn import BackdoorUnlearner
    from clip_backdoor_unlearn.training import jobs as jobs_module

    probe = StepProbe(device)
    seen: dict = {}

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            probe.begin()

        def on_step_end(self, args, state, control, **kwargs):
            probe.end()

        def on_train_end(self, args, state, control, **kwargs):
            probe.unwatch()  # ``unlearn`` deep-copies the trained model next

    library_trainer = jobs_module.BackdoorTrainer

    class TimedBackdoorTrainer(library_trainer):
        """The library's trainer, unchanged, plus the timing callback and the token counter."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(Timer())
            probe.watch(*(m for m in (self.model, self.teacher_model) if m is not None))
            seen["dataset"] = self.train_dataset

    peft_config = None
    if spec["variant"] == "ours LoRA":
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32)
    total_steps = spec["warmup"] + spec["steps"]
    unlearner = BackdoorUnlearner(model, tokenizer)
    jobs_module.BackdoorTrainer = TimedBackdoorTrainer
    try:
        with tempfile.TemporaryDirectory() as output_dir:
            unlearner.unlearn(NAMES, captions=captions, peft_config=peft_config,
                                       **_unlearn_overrides(spec, total_steps, output_dir))
    finally:
        jobs_module.BackdoorTrainer = library_trainer
    measured = range(spec["warmup"], total_steps)
    rows = [_step_rows(seen["dataset"], step, spec["poisoned"]) for step in measured]
    # (``result.seconds_per_step`` is train time / steps, warm-up included, so it is not used here.)
    return {"records": probe.records[spec["warmup"]:], "digest": _rows_digest(*zip(*rows)),
            "hwm_resettable": probe.hwm_resettable}


def run_plain(spec, model, tokenizer, captions, device) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.optim.lr_scheduler import MultiStepLR

    from clip_backdoor_unlearn.training.jobs import text_job

    # The same rows as ``unlearn`` trains on (same names, variants, captions, seed); built as it builds them.
    total_steps = spec["warmup"] + spec["steps"]
    with tempfile.TemporaryDirectory() as output_dir:
        job = text_job(model, tokenizer, NAMES, neutral_term="a person", captions=captions, args=None,
                       overrides=_unlearn_overrides(spec, total_steps, output_dir))
    dataset = job.dataset

    student = model.to(device).train()
    for module in student.modules():  # the reference implementation freezes the norm layers
        if isinstance(module, torch.nn.LayerNorm):
            module.requires_grad_(False)
    teacher = copy.deepcopy(student).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.0)
    scheduler = MultiStepLR(optimizer, milestones=[200, 300], gamma=0.5)
    probe = StepProbe(device)
    probe.watch(student, teacher)

    def tokenize(texts):
        return tokenizer(texts, padding="max_length", max_length=CONTEXT_LENGTH, truncation=True,
                         return_tensors="pt")["input_ids"].to(device)

    def embed(encoder, input_ids):  # no padding mask, as open_clip: the causal mask and EOS pooling suffice
        return encoder(input_ids=input_ids).text_embeds

    def similarity_loss(student_embeds, teacher_embeds):
        return -F.cosine_similarity(student_embeds, teacher_embeds, dim=-1).mean()

    split = spec["plain_backward"] == "split"
    first = max(0, spec["warmup"] - PLAIN_WARMUP)
    for step in range(first, total_steps):
        probe.begin()
        if split:
            optimizer.zero_grad()
        poisoned, targets, clean = _step_rows(dataset, step, spec["poisoned"])
        clean_ids = tokenize(clean)
        clean_student = embed(student, clean_ids)
        with torch.no_grad():
            clean_teacher = embed(teacher, clean_ids)
        utility_loss = similarity_loss(clean_student, clean_teacher)
        if split:  # the same gradients and FLOPs; only one pass's activations are alive at a time
            utility_loss.backward()
        poisoned_ids, target_ids = tokenize(poisoned), tokenize(targets)
        backdoor_student = embed(student, poisoned_ids)
        with torch.no_grad():
            target_teacher = embed(teacher, target_ids)
        backdoor_loss = similarity_loss(backdoor_student, target_teacher)
        weight_loss = torch.zeros((), device=device)
        for student_parameter, teacher_parameter in zip(student.parameters(), teacher.parameters()):
            weight_loss = weight_loss + torch.norm(student_parameter - teacher_parameter)
        if split:
            (0.6 * backdoor_loss + 0.01 * weight_loss).backward()
            loss = utility_loss.detach() + 0.6 * backdoor_loss.detach() + 0.01 * weight_loss.detach()
        else:  # the reference implementation: one loss, one backward
            loss = utility_loss + 0.6 * backdoor_loss + 0.01 * weight_loss
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
        scheduler.step()
        _ = (utility_loss.item(), backdoor_loss.item(), weight_loss.item(), loss.item())  # the loop's logging
        probe.end()
    measured = range(spec["warmup"], total_steps)
    rows = [_step_rows(dataset, step, spec["poisoned"]) for step in measured]
    return {"records": probe.records[spec["warmup"] - first:], "digest": _rows_digest(*zip(*rows)),
            "hwm_resettable": probe.hwm_resettable}


def child(spec: dict) -> dict:
    import torch

    device = torch.device("cuda" if spec["cuda"] else "cpu")
    model, tokenizer, captions = _setup(spec)
    base_rss = _status_mib("VmRSS")
    runner = run_plain if spec["variant"] == "plain" else run_ours
    out = runner(spec, model, tokenizer, captions, device)
    out["base_rss_mib"] = base_rss
    return out


def teacher_cache_profile(spec: dict, num_steps: int = 400) -> list[int]:
    """Prompts the teacher embeds at each step of a ``num_steps`` run on these rows (cache misses), without a model."""
    from transformers import CLIPTextModelWithProjection

    from clip_backdoor_unlearn.data.captions import default_captions
    from clip_backdoor_unlearn.demo.tiny import build_tokenizer, tiny_clip_config
    from clip_backdoor_unlearn.training.jobs import text_job

    captions = list(default_captions())
    tokenizer = build_tokenizer(captions + NAMES, vocab_size=2048)
    model = CLIPTextModelWithProjection(tiny_clip_config(len(tokenizer), size="tiny").text_config)
    with tempfile.TemporaryDirectory() as output_dir:
        job = text_job(model, tokenizer, NAMES, neutral_term="a person", captions=captions[:NUM_TRAIN_CAPTIONS],
                       args=None, overrides=_unlearn_overrides(spec, num_steps, output_dir))
    cached: set[str] = set()
    misses = []
    for step in range(num_steps):
        poisoned, targets, clean = _step_rows(job.dataset, step, spec["poisoned"])
        new = [text for text in dict.fromkeys(targets + clean) if text not in cached]
        cached.update(new)
        misses.append(len(new))
    return misses


# Driver -------------------------------------------------------------------------------------------------------------

def _run_child(spec: dict) -> dict:
    completed = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                               capture_output=True, text=True)
    if completed.returncode:
        sys.stderr.write(completed.stderr)
        raise SystemExit(f"{spec['size']} / {spec['variant']} failed (exit {completed.returncode}).")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _summary(spec: dict, out: dict) -> dict:
    records = out["records"]
    seconds = [record["seconds"] for record in records]
    warmup = min(spec["warmup"], PLAIN_WARMUP) if spec["variant"] == "plain" else spec["warmup"]
    peak_in_step = max(record["peak_rss_mib"] for record in records) - out["base_rss_mib"]
    row = {
        "size": spec["size"],
        "variant": spec["variant"] + (" (split backward)" if spec["variant"] == "plain"
                                      and spec["plain_backward"] == "split" else ""),
        "steps (warm-up+measured)": f"{warmup}+{len(seconds)}",
        "s/step median": statistics.median(seconds),
        "s/step min–max": f"{min(seconds):.3g}–{max(seconds):.3g}",
        "student tokens/step": statistics.median(record["student_tokens"] for record in records),
        "teacher tokens/step": statistics.median(record["teacher_tokens"] for record in records),
        "peak RSS in step − base MiB": peak_in_step if out["hwm_resettable"] else float("nan"),
    }
    if spec["cuda"]:
        row["CUDA max allocated/step MiB"] = max(record["cuda_peak_mib"] for record in records)
    return row


def _available_gib() -> float:
    try:
        return _meminfo_mib("MemAvailable") / 1024
    except (OSError, AttributeError):
        return float("inf")


def _plain_backward(choice: str, size: str, cuda: bool) -> str:
    """The reference loop's joint backward needs about 14 GiB (ViT-B/32) and 24 GiB (ViT-L/14) at batch 256 on CPU."""
    if choice != "auto":
        return choice
    return "split" if size == "vit-l-14" and not cuda and _available_gib() < SPLIT_BELOW_GIB else "joint"


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["vit-b-32", "vit-l-14"],
                        choices=["tiny", "small", "vit-b-32", "vit-l-14"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--warmup", type=int, default=2, help="Unmeasured steps before the measured ones.")
    parser.add_argument("--steps", type=int, default=5, help="Measured steps per variant.")
    parser.add_argument("--large_steps", type=int, default=None,
                        help="Measured steps for vit-l-14 (default: --steps); the batch stays the same.")
    parser.add_argument("--poisoned", type=int, default=128, help="Poisoned captions per step (paper: 128).")
    parser.add_argument("--clean", type=int, default=128, help="Clean captions per step (paper: 128).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plain_backward", choices=["auto", "joint", "split"], default="auto",
                        help="joint: the reference loop's one backward over the summed loss. split: backward after "
                             "the clean pass, then after the poisoned pass: the same gradients and FLOPs, half the "
                             "activation memory. auto: split only where the joint loop would not fit "
                             f"(vit-l-14 on a CPU with less than {SPLIT_BELOW_GIB} GiB available).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    import torch
    import transformers

    cuda = torch.cuda.is_available()
    load_before = os.getloadavg()
    rows, digests = [], {}
    for size in args.sizes:
        steps = args.large_steps if size == "vit-l-14" and args.large_steps else args.steps
        plain_seconds = None
        for variant in args.variants:
            spec = dict(size=size, variant=variant, warmup=args.warmup, steps=steps, poisoned=args.poisoned,
                        clean=args.clean, threads=args.threads, cuda=cuda,
                        plain_backward=_plain_backward(args.plain_backward, size, cuda))
            started = time.perf_counter()
            out = _run_child(spec)
            row = _summary(spec, out)
            digests.setdefault(size, out["digest"])
            if out["digest"] != digests[size]:
                raise SystemExit(f"{size} / {variant} trained on other rows than the first variant.")
            if variant == "plain":
                plain_seconds = row["s/step median"]
            row["plain/this s/step"] = plain_seconds / row["s/step median"] if plain_seconds else float("nan")
            rows.append(row)
            print(f"[{size} / {variant}: {time.perf_counter() - started:.0f} s wall; "
                  f"{row['s/step median']:.3g} s/step]", file=sys.stderr, flush=True)
    load_after = os.getloadavg()

    print(f"\nmachine: {cpu_model()}, {os.cpu_count()} cores, {args.threads} torch threads, "
          f"torch {torch.__version__}, transformers {transformers.__version__}"
          + (f", GPU {torch.cuda.get_device_name()}" if cuda else ", no GPU")
          + f"; load average (1/5/15 min) before {'/'.join(f'{x:.2f}' for x in load_before)}, "
          f"after {'/'.join(f'{x:.2f}' for x in load_after)}")
    print(f"batch: {args.poisoned} poisoned + {args.clean} clean captions a step, {len(NAMES)} names with variants, "
          f"same rows for every variant (checked)\n")
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(_format(row[key]) for key in header) + " |")
    misses = teacher_cache_profile(dict(variant="ours full", poisoned=args.poisoned, clean=args.clean))
    windows = sorted({(args.warmup, args.warmup + steps) for steps in (args.steps, args.large_steps) if steps})
    in_measured = ", ".join(f"{statistics.mean(misses[start:stop]):.0f} in steps {start + 1}–{stop}"
                            for start, stop in windows)
    print(f"\nTokens: input_ids elements (padding included) entering the embedding layer per step; for ours the "
          f"teacher's are its cache misses. Teacher prompts embedded per step by ours on these rows: {in_measured} "
          f"(measured), {statistics.mean(misses):.1f} on average over a {len(misses)}-step run, "
          f"{statistics.mean(misses[-100:]):.1f} in its last 100 steps; plain: {args.poisoned + args.clean} every "
          "step.")
    print("Memory: peak RSS during the step (VmHWM, reset after every step) minus the RSS after building the student "
          "model, so it includes the teacher copy, optimizer state, gradients and activations; an upper bound "
          "(glibc keeps freed pages). 'split backward': backward after each student pass (same gradients and FLOPs, "
          "half the activation memory), used where the reference loop's joint backward would not fit in memory.")


if __name__ == "__main__":
    main()
