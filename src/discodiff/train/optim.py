"""AdamW's parameter groups: weight decay only on matrices that multiply activations.

As nanoGPT's ``configure_optimizers``: parameters of dimension >= 2 decay, and 1-d ones (biases,
LayerNorm/GroupNorm gains, adaLN and time-warp vectors) do not. Embedding tables are 2-d but are
looked up, not multiplied: shrinking a row only because its token is rare is not regularization,
and embedding diffusion needs its token vectors at their scale. They do not decay either: the
parameters of every ``nn.Embedding`` and of every module that sets ``no_weight_decay = True``
(the token encoders of embedding diffusion).
"""

from __future__ import annotations

from torch import nn


def is_embedding(module: nn.Module) -> bool:
    """Whether ``module``'s own parameters are embedding tables (never decayed)."""
    return isinstance(module, nn.Embedding) or getattr(module, "no_weight_decay", False)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups of ``model``'s trainable parameters: ``{"params", "weight_decay"}`` with the
    decayed matrices first, then everything else at decay 0. Each parameter appears once."""
    tables = {id(p) for m in model.modules() if is_embedding(m) for p in m.parameters(recurse=False)}
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 and id(p) not in tables else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
