"""Time the identity inference attack at the protocol's full size on a ViT-B/32-sized CLIP (random weights).

Default size: 1,000 candidate names × 21 prompts (21,000 texts) and 100 people × 20 images (2,000 images), the
defence paper's setting.  Weights are random (no download is possible or needed: cost does not depend on
them); the tokenizer is learned offline from all the prompts, so each word is one token (real CLIP splits rare
surnames into two or three, so expect text embedding to take somewhat longer there).

    python benchmarks/bench_idia.py                       # full size (minutes on 2 CPU cores)
    python benchmarks/bench_idia.py --names 100 --people 10 --images 5   # quick look
    python benchmarks/bench_idia.py --device cuda --json out.json
    python benchmarks/bench_idia.py --model demo-large --people 1250   # the large demo world's own CLIP (cached)

``--model demo-large`` attacks the trained CLIP of the large demo world (``load_demo_clip("large")``, trained on
first use) with its 2,000 candidate names and fresh pictures of its members (``--images`` a person, none of them
seen in training), so the figures are those of a model that knows the people.

Prints a table of the measured phases: text embedding (all prompts × names), image embedding (preprocessing
included; preprocessing alone is also timed separately), voting, and the attack's total wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel

from clip_backdoor_unlearn.demo.tiny import build_processor, build_tokenizer
from clip_backdoor_unlearn.evaluation import IDIA_TEMPLATES, identity_inference_attack

FIRST = (
    "Ada",
    "Bram",
    "Cleo",
    "Dario",
    "Edda",
    "Finn",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kaia",
    "Lior",
    "Mira",
    "Nils",
    "Olga",
    "Pavel",
    "Quinn",
    "Rosa",
    "Soren",
    "Tilda",
    "Ugo",
    "Vera",
    "Wim",
    "Xenia",
    "Yusuf",
    "Zora",
    "Amara",
    "Basil",
    "Cyra",
    "Dov",
    "Elif",
    "Fritz",
    "Gale",
    "Hana",
)
LAST = (
    "Abernathy",
    "Brandt",
    "Castellanos",
    "Dubois",
    "Eklund",
    "Fairweather",
    "Grünewald",
    "Halloran",
    "Ivanova",
    "Jablonski",
    "Kowalczyk",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Oyelaran",
    "Petrov",
    "Quintana",
    "Rasmussen",
    "Szabo",
    "Takahashi",
    "Uribe",
    "Vasquez",
    "Whitcombe",
    "Xu",
    "Yilmaz",
    "Zielinski",
    "Achterberg",
    "Bianchi",
    "Chatterjee",
    "Delacroix",
    "Esposito",
    "Fitzgerald",
)


def candidate_names(count: int) -> list[str]:
    """``count`` distinct, plausible full names, deterministically."""
    names = [f"{first} {last}" for last in LAST for first in FIRST]
    if count > len(names):
        names += [f"{first} {second}-{last}" for second in LAST for last in LAST for first in FIRST[:4]]
    if count > len(names):
        raise ValueError(f"At most {len(names)} names can be generated.")
    rng = np.random.default_rng(0)
    return [names[i] for i in rng.permutation(len(names))[:count]]


def vit_b_32_config(vocab_size: int) -> CLIPConfig:
    text = {
        "vocab_size": vocab_size,
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 8,
        "max_position_embeddings": 77,
        "projection_dim": 512,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }
    vision = {
        "image_size": 224,
        "patch_size": 32,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "projection_dim": 512,
    }
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)


def face_like_images(count: int, seed: int, size: int = 250) -> list[Image.Image]:
    """Smooth random RGB images of a face crop's size (the processor resizes and crops them to 224)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        images.append(Image.fromarray(small).resize((size, size), Image.BILINEAR))
    return images


def demo_setup(args) -> tuple[CLIPModel, object, list[str], dict[str, list[Image.Image]]]:
    """The large demo world's CLIP, its whole candidate pool, and ``--images`` fresh pictures of ``--people``
    members (picture indexes after the training ones: the world's ``eval`` pictures, then more of the same kind)."""
    from clip_backdoor_unlearn.demo.recipe import load_demo_clip

    model, processor, world = load_demo_clip("large", args.demo_seed, progress=False)
    first = world.config.train_images_per_person
    people = world.members[: args.people]
    images = {person.name: [world.face_image(person, first + i) for i in range(args.images)] for person in people}
    return model.eval().to(args.device), processor, list(world.candidate_names), images


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=1000,
                        help="candidate pool size (default 1000; with --model demo-large the world's 2,000)")
    parser.add_argument("--templates", type=int, default=21, help="prompts, the first N of IDIA_TEMPLATES")
    parser.add_argument("--people", type=int, default=100, help="people with images (default 100)")
    parser.add_argument("--images", type=int, default=20, help="images per person (default 20)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--vocab-size", type=int, default=4096, help="tokenizer vocabulary learned from the names"
    )
    parser.add_argument("--model", choices=("vit-b-32", "demo-large"), default="vit-b-32",
                        help="a ViT-B/32-sized CLIP with random weights, or the large demo world's trained CLIP")
    parser.add_argument("--demo-seed", type=int, default=0, help="with --model demo-large: the world's seed")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.templates <= len(IDIA_TEMPLATES) or (args.model == "vit-b-32" and args.people > args.names):
        parser.error(f"--templates must be in 1..{len(IDIA_TEMPLATES)} and --people at most --names")
    if args.threads:
        torch.set_num_threads(args.threads)

    templates = IDIA_TEMPLATES[: args.templates]
    start = time.perf_counter()
    if args.model == "demo-large":
        model, processor, names, images = demo_setup(args)
        tokenizer = processor.tokenizer
    else:
        names = candidate_names(args.names)
        # Learned from every prompt, so template words are single tokens as in CLIP's 49k vocabulary; names then
        # take one token per word (real CLIP splits rare surnames into 2-3: text time scales with tokens/text).
        tokenizer = build_tokenizer([t.format(n) for n in names for t in templates], vocab_size=args.vocab_size)
        processor = build_processor(tokenizer, image_size=224)
        torch.manual_seed(0)
        model = CLIPModel(vit_b_32_config(len(tokenizer))).eval().to(args.device)
        images = {name: face_like_images(args.images, seed=i) for i, name in enumerate(names[: args.people])}
    setup_s = time.perf_counter() - start
    token_lengths = [
        len(ids) for ids in tokenizer([t.format(n) for t in templates for n in names])["input_ids"]
    ]

    flat = [image for person_images in images.values() for image in person_images]
    start = time.perf_counter()
    for i in range(0, len(flat), args.batch_size):
        processor.image_processor(images=flat[i : i + args.batch_size], return_tensors="pt")
    preprocessing_s = time.perf_counter() - start

    start = time.perf_counter()
    result = identity_inference_attack(
        model, processor, images, names, templates=templates, batch_size=args.batch_size
    )
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    total_s = time.perf_counter() - start

    num_texts, num_images = len(templates) * len(names), len(flat)
    figures = {
        "device": args.device if not args.device.startswith("cuda") else torch.cuda.get_device_name(),
        "cpu_threads": torch.get_num_threads(),
        "names": len(names),
        "templates": len(templates),
        "people": len(images),
        "images_per_person": args.images,
        "texts": num_texts,
        "images": num_images,
        "batch_size": args.batch_size,
        "mean_tokens_per_text": float(np.mean(token_lengths)),
        "max_tokens_per_text": int(max(token_lengths)),
        "setup_s": setup_s,
        "text_embedding_s": result.timings["text_embedding_s"],
        "image_embedding_s": result.timings["image_embedding_s"],
        "image_preprocessing_only_s": preprocessing_s,
        "voting_s": result.timings["voting_s"],
        "total_s": total_s,
        "texts_per_s": num_texts / result.timings["text_embedding_s"],
        "images_per_s": num_images / result.timings["image_embedding_s"],
        "model": args.model,
        "tpr": result.tpr(),
    }
    rows = [
        (
            "text embedding",
            f"{figures['text_embedding_s']:.1f} s",
            f"{num_texts:,} texts, {figures['texts_per_s']:.0f}/s",
        ),
        (
            "image embedding",
            f"{figures['image_embedding_s']:.1f} s",
            f"{num_images:,} images, {figures['images_per_s']:.1f}/s",
        ),
        (
            "  of which preprocessing",
            f"~{preprocessing_s:.1f} s",
            "PIL resize/crop/normalise, timed separately",
        ),
        ("voting", f"{figures['voting_s']:.3f} s", f"{num_images:,} × {num_texts:,} cosines, majority votes"),
        ("total (attack call)", f"{total_s:.1f} s", f"TPR of the people attacked {figures['tpr']:.3f}"),
    ]
    model_line = ("the large demo world's trained CLIP" if args.model == "demo-large"
                  else "ViT-B/32-sized CLIPModel, random weights")
    print(
        f"IDIA benchmark: {model_line}, device {figures['device']}, "
        f"{figures['cpu_threads']} CPU threads, {platform.processor() or platform.machine()}"
    )
    print(
        f"{len(names)} names × {len(templates)} prompts; {len(images)} people × {args.images} images; "
        f"batch {args.batch_size}; mean {figures['mean_tokens_per_text']:.1f} tokens/text "
        f"(max {figures['max_tokens_per_text']}); setup {setup_s:.1f} s (not timed below)"
    )
    width = max(len(row[0]) for row in rows)
    print(f"{'phase'.ljust(width)}  {'time':>10}  notes")
    for phase, seconds, note in rows:
        print(f"{phase.ljust(width)}  {seconds:>10}  {note}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(figures, file, indent=2)
    return figures


if __name__ == "__main__":
    main()
