"""Radial part of the edge features: Bessel basis times a smooth polynomial cutoff envelope."""

from __future__ import annotations

import math

import torch
from torch import nn


def envelope(x: torch.Tensor, p: float = 6.0) -> torch.Tensor:
    """u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2) for x < 1, else 0: falls from 1
    at x = 0 to 0 at x = 1 with p continuous derivatives there (DimeNet)."""
    u = 1.0 + torch.pow(x, p) * (-(p + 1.0) * (p + 2.0) / 2.0 + x * (p * (p + 2.0) - p * (p + 1.0) / 2.0 * x))
    return u * (x < 1.0).to(x.dtype)


def envelope_derivative(x: torch.Tensor, p: float = 6.0) -> torch.Tensor:
    """du/dx of `envelope` (0 for x >= 1; x > 0)."""
    c = p * (p + 1.0) * (p + 2.0) / 2.0
    du = torch.pow(x, p - 1.0) * (-c + x * (2.0 * c - c * x))
    return du * (x < 1.0).to(x.dtype)


class PolynomialCutoff(nn.Module):
    """Envelope u(r) that goes to zero with p continuous derivatives at the cutoff (DimeNet)."""

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = float(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return envelope(r / self.cutoff, self.p)


class BesselBasis(nn.Module):
    """sqrt(2/rc) sin(n pi r / rc) / r, n = 1..n_basis (NequIP/MACE radial basis)."""

    def __init__(self, cutoff: float, n_basis: int = 8):
        super().__init__()
        self.cutoff = float(cutoff)
        self.prefactor = math.sqrt(2.0 / cutoff)
        self.register_buffer("frequencies", torch.arange(1, n_basis + 1, dtype=torch.get_default_dtype()) * math.pi / cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.frequencies * r) / r
