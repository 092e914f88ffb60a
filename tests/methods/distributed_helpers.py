"""Shared pieces of the 2-rank DeepSpeed method tests (spawned ranks import them from here)."""

from __future__ import annotations

import socket

import torch
from torch import nn


def free_port() -> int:
    """A free TCP port on the loopback for the ranks' rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tiny(nn.Module):
    """A two-layer regressor: ``proj`` is the adapted matrix, ``out`` the head."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(16, 12)
        self.out = nn.Linear(12, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.proj(x)))
