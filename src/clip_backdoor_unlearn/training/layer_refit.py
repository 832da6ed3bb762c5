"""Refit the image tower's last encoder layers with the projection after training (``projection_refit_layers``).

The projection refit undoes part of the drift that costs zero-shot accuracy at the last linear layer; the drift itself
sits in the encoder layers. This goes one level deeper: a short distillation of the last few layers and the projection
on the refit's pictures, fed the trained tower's hidden states (computed once), where the kept pictures move toward
the teacher's embeddings and the removed faces are held at the embeddings training gave them. The projection refit
runs after it, on the refit layers' features, and holds the removed faces at their trained embeddings and, with the
name target, their names (a name hold inside this loop did not keep a face forgotten that the projection's did). Only
the class token's path through the last layer reaches the pooled output, so that layer runs for it alone
(docs/method.md, "The projection refit").
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

STEPS = 300
"""AdamW steps of the layer refit."""

LEARNING_RATE = 1e-4
"""Its learning rate (constant)."""

KEPT_PER_STEP, REMOVED_PER_STEP = 128, 64
"""Kept and removed pictures a step, drawn with replacement from the cached ones."""

HOLD = 3.0
"""Weight of holding the removed faces at their trained embeddings (``1 − cosine``) against the kept pictures' pull."""


def class_token_output(layer: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """A ``CLIPEncoderLayer``'s output for the class token alone, ``(batch, width)``: what the pooled output reads.

    Every token's keys and values, the class token's query, attention and MLP: the same numbers as ``layer(hidden,
    None)[:, 0]`` at a fraction of the cost.
    """
    token = class_token_attention(layer, hidden)
    return token + layer.mlp(layer.layer_norm2(token))


def class_token_attention(layer: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The class token after a ``CLIPEncoderLayer``'s attention and residual, before its MLP, ``(batch, width)``."""
    attention = layer.self_attn
    normed = layer.layer_norm1(hidden)
    batch, tokens, width = normed.shape
    heads = attention.num_heads

    def split(states: torch.Tensor) -> torch.Tensor:
        return states.view(batch, states.shape[1], heads, width // heads).transpose(1, 2)

    query = split(attention.q_proj(normed[:, :1]))
    mixed = F.scaled_dot_product_attention(query, split(attention.k_proj(normed)), split(attention.v_proj(normed)),
                                           scale=attention.scale)
    return hidden[:, 0] + attention.out_proj(mixed.transpose(1, 2).reshape(batch, 1, width))[:, 0]


def pooled_from_layer_inputs(vision_model: torch.nn.Module, layers: int, hidden: torch.Tensor) -> torch.Tensor:
    """The pooled features (what ``visual_projection`` reads) from the hidden states entering the last ``layers``
    encoder layers."""
    blocks = vision_model.encoder.layers[-layers:]
    for block in blocks[:-1]:
        hidden = block(hidden, None)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
    return vision_model.post_layernorm(class_token_output(blocks[-1], hidden))


def layer_inputs(vision_model: torch.nn.Module, layers: int, pixel_values: torch.Tensor) -> torch.Tensor:
    """The hidden states entering the last ``layers`` encoder layers."""
    return vision_model(pixel_values=pixel_values, output_hidden_states=True).hidden_states[-(layers + 1)]


def refit_layers(vision_model: torch.nn.Module, projection: torch.nn.Linear, layers: int, kept_inputs: torch.Tensor,
                 teacher_embeddings: torch.Tensor, removed_inputs: torch.Tensor, removed_embeddings: torch.Tensor,
                 seed: int = 0) -> None:
    """Train the last ``layers`` encoder layers (layer norms frozen) and ``projection`` in place, on cached inputs:

    ``1 − cos(kept, teacher) + HOLD · (1 − cos(removed, trained))``, means over ``KEPT_PER_STEP`` and
    ``REMOVED_PER_STEP`` pictures drawn with ``seed`` each of ``STEPS`` AdamW steps; ``removed_embeddings`` are the
    removed pictures' trained embeddings (float), where they are held.
    """
    blocks = vision_model.encoder.layers[-layers:]
    trained = [parameter for name, parameter in blocks.named_parameters() if "layer_norm" not in name]
    trained += list(projection.parameters())

    def embed(hidden: torch.Tensor) -> torch.Tensor:
        return projection(pooled_from_layer_inputs(vision_model, layers, hidden)).float()

    held, teacher = removed_embeddings.float(), teacher_embeddings.float()
    flags = [parameter.requires_grad for parameter in trained]
    for parameter in trained:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(trained, lr=LEARNING_RATE, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        for _ in range(STEPS):
            kept = torch.randint(len(kept_inputs), (KEPT_PER_STEP,), generator=generator).to(kept_inputs.device)
            removed = torch.randint(len(removed_inputs), (REMOVED_PER_STEP,), generator=generator)
            removed = removed.to(removed_inputs.device)
            loss = 1 - F.cosine_similarity(embed(kept_inputs[kept]), teacher[kept]).mean()
            loss = loss + HOLD * (1 - F.cosine_similarity(embed(removed_inputs[removed]), held[removed]).mean())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for parameter, flag in zip(trained, flags):
        parameter.requires_grad_(flag)
