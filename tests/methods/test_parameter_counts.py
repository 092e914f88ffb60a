"""spectune.methods.base.PretrainedParameters: trainable parameters against the pretrained model's size, for a method
that adds parameters beside W (LoRA) and one that replaces W by buffers (SVF keeps U, σ, V and trains z)."""

from __future__ import annotations

import torch
from torch import nn

from spectune.methods.base import PretrainedParameters, trainable_parameters


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 2))  # 8*4 + 4 + 4*2 + 2 = 46 parameters


def test_a_method_adding_factors_counts_them_on_top_of_the_model() -> None:
    model = _model()
    pretrained = PretrainedParameters(model)
    for p in model.parameters():
        p.requires_grad_(False)
    model[0].lora_A = nn.Parameter(torch.zeros(2, 8))  # r = 2: 16 + 8 added
    model[0].lora_B = nn.Parameter(torch.zeros(4, 2))
    assert pretrained.counts(model) == (24, 46 + 24)
    assert trainable_parameters(model) == (24, 46 + 24)  # the plain count agrees when W stays a parameter


def test_a_method_holding_w_as_buffers_is_measured_against_the_whole_model() -> None:
    model = _model()
    pretrained = PretrainedParameters(model)
    layer = model[0]
    U, S, Vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
    del layer.weight  # SVF: W leaves the parameters, U, σ, V become buffers, z (one per singular value) is trained
    layer.register_buffer("U", U)
    layer.register_buffer("S", S)
    layer.register_buffer("Vh", Vh)
    layer.z = nn.Parameter(torch.ones(4))
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith("z"))
    assert pretrained.counts(model) == (4, 46 + 4)
    assert trainable_parameters(model) == (4, 46 - 32 + 4)  # the plain count loses W's 32
