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

from typing import List, Tuple

import torch
from ase.data import atomic_numbers, covalent_radii
from torch import nn

from mlffd.model.radial import envelope, envelope_derivative

COULOMB_EV_A = 14.399645  # e^2 / (4 pi eps0), eV A
SCREENING_LENGTH_A = 0.46850  # 0.8854 x the Bohr radius
# phi(x) = sum_k c_k exp(-d_k x): the universal screening function's coefficients and exponents
SCREENING_COEFFICIENTS = (0.18175, 0.50986, 0.28022, 0.02817)
SCREENING_EXPONENTS = (3.19980, 0.94229, 0.40290, 0.20162)


class ZBLRepulsion(nn.Module):
    """Per-atom ZBL energies [N] of a graph's edges, for the elements of a student (species index =
    position in `elements`; a pair of species s, t is pair type s * len(elements) + t)."""

    def __init__(self, elements: List[str], cutoff: float):
        super().__init__()
        z = [float(atomic_numbers[e]) for e in elements]
        radius = [float(covalent_radii[atomic_numbers[e]]) for e in elements]
        pairs = [(s, t) for s in range(len(z)) for t in range(len(z))]
        switch = [min(radius[s] + radius[t], float(cutoff)) for s, t in pairs]
        self.n_species = len(z)
        self.reach = max(switch)  # no pair is switched on beyond this
        self.coulomb = COULOMB_EV_A
        dtype = torch.get_default_dtype()
        # derived from the element list alone: not in the state_dict
        self.register_buffer("pair_charge", torch.tensor([z[s] * z[t] for s, t in pairs], dtype=dtype),
                             persistent=False)
        self.register_buffer("pair_screening", torch.tensor(
            [SCREENING_LENGTH_A / (z[s] ** 0.23 + z[t] ** 0.23) for s, t in pairs], dtype=dtype), persistent=False)
        self.register_buffer("pair_switch", torch.tensor(switch, dtype=dtype), persistent=False)
        self.register_buffer("coefficients", torch.tensor(SCREENING_COEFFICIENTS, dtype=dtype), persistent=False)
        self.register_buffer("exponents", torch.tensor(SCREENING_EXPONENTS, dtype=dtype), persistent=False)

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, centre: torch.Tensor,
                neighbour: torch.Tensor) -> torch.Tensor:
        """Per-node energies [N], differentiable (training's path: any order of gradients). Every edge
        is evaluated (past its pair's switching distance the envelope makes it exactly 0): no shape
        that depends on the data, so torch.compile traces it (mlffd.training.step)."""
        pair = species.index_select(0, centre) * self.n_species + species.index_select(0, neighbour)
        r = torch.linalg.vector_norm(edge_vec, dim=1)
        energy = 0.5 * self.pair_energy(r, pair) * envelope(r / self.pair_switch.index_select(0, pair))
        return r.new_zeros(species.shape[0]).index_add(0, centre, energy)

    def energy_and_edge_gradient(self, edge_vec: torch.Tensor, species: torch.Tensor, centre: torch.Tensor,
                                 neighbour: torch.Tensor, n_local: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first `n_local` nodes' energies [n_local], and the gradient of their sum with respect to
        the edge vectors as (edges [M], gradient [M, 3]), zero on every other edge; in closed form: the
        frozen model's path, with no autograd graph to build and walk each MD step (the forward's
        numbers, checked in tests/test_export.py)."""
        short, pair = self.short_edges(edge_vec, species, centre, neighbour)
        vec = edge_vec.index_select(0, short)
        r = torch.linalg.vector_norm(vec, dim=1)
        i = centre.index_select(0, short)
        a = self.pair_screening.index_select(0, pair)
        rc = self.pair_switch.index_select(0, pair)
        k = 0.5 * self.coulomb * self.pair_charge.index_select(0, pair)
        terms = self.screening_terms(r, a)
        phi = terms.mv(self.coefficients)
        dphi = -terms.mv(self.coefficients * self.exponents) / a
        u = envelope(r / rc)
        du = envelope_derivative(r / rc) / rc
        energy = k * phi * u / r
        # d/dr (phi u / r) = (phi' u + phi u') / r - phi u / r^2; only edges that start at a local node count
        slope = k * ((dphi * u + phi * du) / r - phi * u / (r * r)) * (i < n_local).to(r.dtype)
        energy_per_node = r.new_zeros(species.shape[0]).index_add(0, i, energy)[:n_local]
        return energy_per_node, short, (slope / r).unsqueeze(-1) * vec

    def short_edges(self, edge_vec: torch.Tensor, species: torch.Tensor, centre: torch.Tensor,
                    neighbour: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The edges inside the longest switching distance (about a tenth of a 5 A cutoff sphere's in a
        metal: the rest add exactly zero, and an MD step should not pay for them) and their pair types."""
        with torch.no_grad():
            # squared lengths as a matrix-vector product: a reduction over 3 strided columns costs 4x
            square = (edge_vec * edge_vec).mv(torch.ones(3, dtype=edge_vec.dtype, device=edge_vec.device))
            short = torch.nonzero(square < self.reach * self.reach).squeeze(1)
        i = centre.index_select(0, short)
        pair = species.index_select(0, i) * self.n_species + species.index_select(0, neighbour.index_select(0, short))
        return short, pair

    def pair_energy(self, r: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        """The ZBL energy (eV) of pairs of type `pair` at distance r (A), unswitched."""
        phi = self.screening_terms(r, self.pair_screening.index_select(0, pair)).mv(self.coefficients)
        return self.coulomb * self.pair_charge.index_select(0, pair) / r * phi

    def screening_terms(self, r: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """exp(-d_k r / a) [M, 4]: phi(r / a) is these times the coefficients c_k."""
        return torch.exp((r / a).unsqueeze(-1) * -self.exponents)
