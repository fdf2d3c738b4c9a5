"""A fixed short-range repulsion under the learned energy: the universal ZBL screened-nuclear pair
potential (Ziegler, Biersack, Littmark 1985), switched off smoothly at the pair's covalent distance.

A student learns the teacher only where the training frames put atom pairs; closer than that (a hot
liquid, a collision) its learned energy is an extrapolation and can have a hole. The ZBL wall is
physics there, ~0 at bonding distances, and the network learns the residual over it (MACE's
`pair_repulsion` does the same). Per edge i->j:

    V(r) = 1/2 * k_e Z_i Z_j / r * phi(r / a) * u(r / r_ij^cov),   a = 0.46850 A / (Z_i^0.23 + Z_j^0.23)

with phi the universal screening function, k_e = 14.399645 eV A, r_ij^cov the sum of the two
covalent radii (ase.data; at most the student's cutoff, so every pair it reaches is an edge) and u the
same smooth polynomial envelope (p = 6) as the radial functions; the 1/2 because every pair is two
edges. Units: A, eV.
"""

from __future__ import annotations

from typing import List

import torch
from ase.data import atomic_numbers, covalent_radii
from torch import nn

from mlffd.model.radial import envelope

COULOMB_EV_A = 14.399645  # e^2 / (4 pi eps0), eV A
SCREENING_LENGTH_A = 0.46850  # 0.8854 x the Bohr radius
# phi(x) = sum_k c_k exp(-d_k x): the universal screening function's coefficients and exponents
SCREENING_COEFFICIENTS = (0.18175, 0.50986, 0.28022, 0.02817)
SCREENING_EXPONENTS = (3.19980, 0.94229, 0.40290, 0.20162)


class ZBLRepulsion(nn.Module):
    """Per-edge ZBL energies [E] for the elements of a student (species index = position in `elements`)."""

    def __init__(self, elements: List[str], cutoff: float):
        super().__init__()
        z = torch.tensor([float(atomic_numbers[e]) for e in elements], dtype=torch.get_default_dtype())
        radius = torch.tensor([float(covalent_radii[atomic_numbers[e]]) for e in elements],
                              dtype=torch.get_default_dtype())
        self.cutoff = float(cutoff)
        self.screening_length = SCREENING_LENGTH_A
        self.coulomb = COULOMB_EV_A
        # derived from the element list alone: not in the state_dict
        self.register_buffer("charge", z, persistent=False)
        self.register_buffer("covalent_radius", radius, persistent=False)
        self.register_buffer("coefficients", torch.tensor(SCREENING_COEFFICIENTS, dtype=z.dtype), persistent=False)
        self.register_buffer("exponents", torch.tensor(SCREENING_EXPONENTS, dtype=z.dtype), persistent=False)

    def forward(self, length: torch.Tensor, species_i: torch.Tensor, species_j: torch.Tensor) -> torch.Tensor:
        z_i = self.charge.index_select(0, species_i)
        z_j = self.charge.index_select(0, species_j)
        r_cov = (self.covalent_radius.index_select(0, species_i)
                 + self.covalent_radius.index_select(0, species_j)).clamp(max=self.cutoff)
        return 0.5 * self.bare_energy(length, z_i, z_j) * envelope(length / r_cov)

    def bare_energy(self, length: torch.Tensor, z_i: torch.Tensor, z_j: torch.Tensor) -> torch.Tensor:
        """The ZBL pair energy (eV) of nuclear charges z_i, z_j at distance `length` (A), unswitched."""
        a = self.screening_length / (z_i.pow(0.23) + z_j.pow(0.23))
        phi = (self.coefficients * torch.exp(-self.exponents * (length / a).unsqueeze(-1))).sum(-1)
        return self.coulomb * z_i * z_j / length * phi
