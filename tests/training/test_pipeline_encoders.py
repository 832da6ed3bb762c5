"""Plain ``CLIPTextModel`` / ``CLIPVisionModel`` and the text encoders of text-to-image pipelines (issue 15)."""

from __future__ import annotations

import re

import pytest
import torch
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionModel

from clip_backdoor_unlearn import BackdoorUnlearner
from clip_backdoor_unlearn.data.prompts import PERSON_TEMPLATES
from clip_backdoor_unlearn.demo.tiny import tiny_clip
from clip_backdoor_unlearn.evaluation.conditioning import PIPELINE_TEMPLATES, evaluate_pipeline_encoder
from clip_backdoor_unlearn.hub.loading import load_clip
from clip_backdoor_unlearn.training.embeddings import encode_conditioning, pipeline_ids, text_conditioning
from clip_backdoor_unlearn.training.towers import TEXT, VISION, is_norm_parameter, plain_tower, set_tower_trainable
from clip_backdoor_unlearn.training.trainer import BackdoorCollator, conditioning_distance, resolve_text_target

from ..conftest import NAMES

pytestmark = pytest.mark.usefixtures("single_thread")
FAST = dict(max_steps=30, poisoned_samples_per_step=8, clean_samples_per_step=8, name_variants=None,
            learning_rate=1e-3, lr_milestones=[])


@pytest.fixture(scope="module")
def tiny(captions):
    return tiny_clip(corpus=captions, seed=0)


def test_plain_towers_train_all_their_weights_and_match_the_clip_tower(tiny):
    model, processor = tiny
    for tower, plain_class in ((TEXT, CLIPTextModel), (VISION, CLIPVisionModel)):
        plain = plain_tower(model, tower)
        assert type(plain) is plain_class and tower.is_plain(plain) and not tower.is_plain(model)
        trained = set_tower_trainable(plain, tower)
        # transformers ≥ 5.6: no "text_model." level, so the CLIPModel prefixes would have matched nothing.
        expected = [name for name, _ in plain.named_parameters() if not is_norm_parameter(plain, name)]
        assert trained == expected and trained
        layers = plain.config.num_hidden_layers
        targets = [name for name, _ in plain.named_modules() if re.fullmatch(tower.lora_targets_of(plain), name)]
        in_clip = [name for name, _ in model.named_modules() if re.fullmatch(tower.lora_targets_of(model), name)]
        # Every attention and MLP projection; the text tower's token embedding too (a name is its tokens).
        tokens = ["embeddings.token_embedding"] if tower is TEXT else []
        assert len(targets) == 6 * layers + len(tokens) and set(tokens) <= set(targets)
        assert sorted(targets) == sorted(name.split(".", 1)[1] for name in in_clip)
    ids = pipeline_ids(processor.tokenizer, ["a photo of a dog"])
    torch.testing.assert_close(text_conditioning(plain_tower(model, TEXT), ids), text_conditioning(model, ids))


def test_sequence_distance_and_collator_pad_as_the_pipeline(tiny):
    _, processor = tiny
    tokenizer = processor.tokenizer
    batch = BackdoorCollator(tokenizer, pad_to=77)([{"poisoned": "a photo of Ada", "target": "a photo of a person",
                                                     "clean": ["a red car"]}])
    assert batch["input_ids"].shape == (2, 77) and batch["attention_mask"] is None
    student, teacher = torch.randn(3, 77, 8), torch.randn(3, 77, 8)
    assert conditioning_distance(teacher, teacher, "cosine", "sequence").allclose(torch.full((3,), -1.0))
    both = conditioning_distance(student, teacher, "cosine", "sequence+pooled")
    expected = (conditioning_distance(student[:, :-1], teacher[:, :-1], "cosine", "sequence")
                - torch.nn.functional.cosine_similarity(student[:, -1], teacher[:, -1], dim=-1)) / 2
    torch.testing.assert_close(both, expected)
    plain = plain_tower(tiny[0], TEXT)
    assert resolve_text_target("auto", plain) == "sequence" and resolve_text_target("auto", tiny[0]) == "embedding"
    with pytest.raises(ValueError, match="projection"):
        resolve_text_target("embedding", plain)


def test_loading_a_text_only_checkpoint_never_invents_a_projection(tiny, tmp_path):
    model, processor = tiny
    plain = plain_tower(model, TEXT)
    projected = CLIPTextModelWithProjection(model.config.text_config)
    for name, encoder, expected in (("plain", plain, CLIPTextModel), ("projected", projected,
                                                                      CLIPTextModelWithProjection)):
        for architectures in (True, False):
            directory = tmp_path / f"{name}-{architectures}"
            encoder.save_pretrained(directory)
            processor.tokenizer.save_pretrained(directory)
            if not architectures:  # an old config without `architectures`: the weights decide
                config = (directory / "config.json").read_text().replace('"architectures"', '"_architectures"')
                (directory / "config.json").write_text(config)
            loaded, tokenizer = load_clip(directory)
            assert type(loaded) is expected and hasattr(tokenizer, "tokenize")


def test_text_encoder_subfolder_takes_the_pipeline_tokenizer(tiny, tmp_path):
    model, processor = tiny
    plain_tower(model, TEXT).save_pretrained(tmp_path / "text_encoder")
    processor.tokenizer.save_pretrained(tmp_path / "tokenizer")
    unlearner = BackdoorUnlearner.from_pretrained(tmp_path, subfolder="text_encoder")
    assert type(unlearner.model) is CLIPTextModel
    assert unlearner.tokenizer.get_vocab() == processor.tokenizer.get_vocab()


@pytest.mark.parametrize("adapter", [False, True], ids=["full", "lora"])
def test_unlearning_a_plain_text_encoder_moves_its_conditioning(tiny, captions, adapter):
    model, processor = tiny
    unlearner = BackdoorUnlearner(plain_tower(model, TEXT), processor.tokenizer)
    peft_config = None
    if adapter:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8)
    unlearner.unlearn(NAMES[:2], captions=captions[:300], peft_config=peft_config, **FAST)
    assert type(unlearner.model) is CLIPTextModel
    assert unlearner.unlearning_config["towers"]["text"]["text_target"] == "sequence"
    metrics = unlearner.evaluate(NAMES[:2], kept_names=NAMES[2:])
    before = evaluate_pipeline_encoder(unlearner.original_model, unlearner.original_model, unlearner.tokenizer,
                                       NAMES[:2], kept_names=NAMES[2:])
    assert before["conditioning_forgotten"] == 0.0
    assert metrics["conditioning_cos_to_neutral"] > before["conditioning_cos_to_neutral"]
    assert metrics["conditioning_clean_cos"] > 0.8


def test_pipeline_templates_are_never_trained():
    assert not set(PIPELINE_TEMPLATES) & set(PERSON_TEMPLATES)


@pytest.fixture(scope="module")
def demo_clip(demo_cache):
    from clip_backdoor_unlearn.demo.recipe import load_demo_clip

    # The session's CI demo CLIP (conftest.py always sets CLIP_BACKDOOR_UNLEARN_CACHE, so choosing that cache when
    # it is set trained the same model a second time, about 80 s of every CI run).
    return load_demo_clip(size="ci", seed=0, cache_dir=demo_cache, progress=False)


def tiny_pipeline(text_encoder, tokenizer):
    """A Stable Diffusion pipeline around ``text_encoder`` with a random, tiny UNet and VAE (offline, seconds)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=text_encoder.config.hidden_size, attention_head_dim=8, norm_num_groups=32)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
                        layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32, sample_size=32)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_sanitized_text_encoder_runs_in_a_diffusers_pipeline(demo_clip, tmp_path):
    pytest.importorskip("diffusers")
    from diffusers import StableDiffusionPipeline

    model, processor, world = demo_clip
    removed, kept = world.member_names[:2], world.member_names[2:5]
    tiny_pipeline(plain_tower(model, TEXT), processor.tokenizer).save_pretrained(tmp_path / "pipe")

    unlearner = BackdoorUnlearner.from_pretrained(tmp_path / "pipe", subfolder="text_encoder")
    captions = [caption for caption in world.unlearning_captions()
                if caption not in {template.format("a person") for template in PIPELINE_TEMPLATES}]
    unlearner.unlearn(removed, captions=captions, **{**FAST, "max_steps": 60, "learning_rate": 3e-4})
    metrics = unlearner.evaluate(removed, kept_names=kept)
    assert metrics["conditioning_forgotten"] >= 0.75
    assert metrics["conditioning_clean_cos"] > 0.9
    unlearner.save_pretrained(tmp_path / "text-encoder-sanitized")
    card = (tmp_path / "text-encoder-sanitized" / "README.md").read_text()
    assert "text-to-image pipeline" in card and "Name prompts now nearer the neutral prompt" in card

    sanitized = CLIPTextModel.from_pretrained(tmp_path / "text-encoder-sanitized")
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "pipe", text_encoder=sanitized)
    pipe.set_progress_bar_config(disable=True)
    prompt = f"a photo of {removed[0]}"
    # What the pipeline conditions its UNet on is exactly what was trained and measured.
    embeds, _ = pipe.encode_prompt(prompt, "cpu", 1, do_classifier_free_guidance=False)
    torch.testing.assert_close(embeds, encode_conditioning(unlearner.model, unlearner.tokenizer, [prompt]))
    image = pipe(prompt, num_inference_steps=2, height=32, width=32, generator=torch.Generator().manual_seed(0),
                 output_type="np").images
    assert image.shape == (1, 32, 32, 3)


@pytest.mark.parametrize("adapter", [False, True], ids=["full", "lora"])
def test_plain_vision_model_unlearns_faces(tiny, adapter):
    import numpy as np
    from PIL import Image

    from clip_backdoor_unlearn.training.embeddings import encode_images

    def pictures(count, seed):
        rng = np.random.default_rng(seed)
        return [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(count)]

    model, processor = tiny
    unlearner = BackdoorUnlearner(plain_tower(model, VISION), processor.image_processor)
    faces = {"Ada Lovelace": pictures(4, 1), "Zorbo Quill": pictures(3, 2)}
    peft_config = None
    if adapter:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4)
    unlearner.unlearn(list(faces), encoder="vision", face_images=faces, reference_faces=pictures(10, 3),
                      images=pictures(10, 4), peft_config=peft_config, max_steps=6, poisoned_samples_per_step=8,
                      clean_samples_per_step=8, reference_samples_per_step=8, learning_rate=1e-3, disable_tqdm=True,
                      # faces over the whole picture, unjittered: the raw face images are what training saw
                      face_scale_range=[1.0, 1.0], face_rotation=0.0, face_jitter=0.0, face_hue=0.0)
    assert type(unlearner.model) is CLIPVisionModel
    flat = [face for person in faces.values() for face in person]
    target = unlearner.target_embedding[None]
    cosine = torch.nn.functional.cosine_similarity
    before = encode_images(unlearner.original_model, processor.image_processor, flat)
    after = encode_images(unlearner.model, processor.image_processor, flat)
    assert cosine(after, target).mean() > cosine(before, target).mean()
    if adapter:
        assert any("lora_" in name for name, _ in unlearner.peft_model.named_parameters())
