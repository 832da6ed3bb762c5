"""An offline world in which a tiny CLIP really knows people, and the recipe that trains that CLIP.

No model or data set can be downloaded in this project's sandbox, so the demo builds its own: invented people
with drawn faces (members named in training captions, non-members never seen, distractor names), unnamed faces
captioned "a person", and a shapes-and-digits task to measure utility.  ``load_demo_clip`` trains a CLIP on it
once (a few minutes on two CPU cores) and caches it as a plain ``save_pretrained`` checkpoint.

    from clip_backdoor_unlearn.demo import load_demo_clip

    model, processor, world = load_demo_clip(size="full", seed=0)
    world.member_names[:10]          # people the model knows
    world.faces()["eval"]            # fresh pictures of members and non-members, for the IDIA
"""

from .faces import FaceAttributes, draw_face, sample_attributes
from .recipe import (
    RECIPE_VERSION,
    RECIPES,
    RecipeConfig,
    build_demo_model,
    contrastive_loss,
    default_cache_root,
    demo_cache_dir,
    demo_training_stats,
    load_demo_clip,
    train_demo_clip,
)
from .world import (
    DEMO_ZERO_SHOT_TEMPLATES,
    NEUTRAL_TERM,
    PERSON_TEMPLATES,
    WORLD_SIZES,
    DemoWorld,
    Person,
    WorldConfig,
    generate_names,
)

__all__ = [
    "DEMO_ZERO_SHOT_TEMPLATES",
    "NEUTRAL_TERM",
    "PERSON_TEMPLATES",
    "RECIPES",
    "RECIPE_VERSION",
    "WORLD_SIZES",
    "DemoWorld",
    "FaceAttributes",
    "Person",
    "RecipeConfig",
    "WorldConfig",
    "build_demo_model",
    "contrastive_loss",
    "default_cache_root",
    "demo_cache_dir",
    "demo_training_stats",
    "draw_face",
    "generate_names",
    "load_demo_clip",
    "sample_attributes",
    "train_demo_clip",
]
