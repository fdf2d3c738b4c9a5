"""The e3nn student: a MACE-style potential with scalar node states, built for latency.

Per interaction layer t (all irreps in e3nn order and normalisation):

    w_ij   = R_t(|r_ij|)[l, c] * h_j[c]                       radial weights x neighbour state
    A_i    = 1/<n> sum_j w_ij[l(m), c] Y_m(r_ij)              atomic basis, irreps C x (0e+1o+2e+..)
    U, V   = Linear(A_i)                                     e3nn o3.Linear, P channels each per l
    B_i,l  = sum_m U_l,m V_l,m                               P invariant products per l (3-body terms)
    h_i   += MLP([h_i, A_i,0e, B_i,0 .. B_i,lmax])            scalar update (last layer: energy)

Node states stay scalar (like MACE-MP "small", hidden irreps Cx0e), so the edge tensor product is a
product with the spherical harmonics and a scatter per layer (here `kernels.conv_scatter`, pure
PyTorch, any order of gradients), the hot path that export replaces with C++/CUDA kernels
(export/fused.py: spline_conv on tabulated radials + interaction_node). Energy is a function of the edge vectors
only; forces and virial come from one backward pass through them (energy conserving by construction).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from e3nn import o3
from e3nn.util.jit import compile_mode
from torch import nn

from mlffd.model import kernels
from mlffd.model.potential import EdgePotential
from mlffd.model.radial import BesselBasis, PolynomialCutoff
from mlffd.model.registry import DEFAULT_ARCHITECTURE, register_architecture
from mlffd.model.repulsion import ZBLRepulsion


@dataclass
class StudentConfig:
    elements: List[str]
    cutoff: float = 5.0
    num_interactions: int = 2
    channels: int = 16
    lmax: int = 2
    n_radial: int = 8
    radial_hidden: int = 32
    mlp_hidden: int = 32
    # Invariant products per degree (P above); None: `channels`. Per-atom work only: the edge
    # kernels, which dominate an MD step, do not see it.
    products: Optional[int] = None
    # A fixed ZBL wall under the learned energy, for pairs closer than their covalent distance
    # (mlffd.model.repulsion): where no training frame puts atoms, the energy still rises.
    pair_repulsion: bool = False
    avg_num_neighbors: float = 20.0
    # Fitted from the training data (mlffd.training.trainset.fit_statistics).
    atomic_energies: Optional[List[float]] = None
    energy_scale: float = 1.0
    architecture: str = DEFAULT_ARCHITECTURE
    extra: Dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StudentConfig":
        return cls(**data)


class ConvScatter(nn.Module):
    """Reference edge tensor product + scatter (pure PyTorch, supports double backward).

    A[i, c, m] = sum_{e: centre = i} radial[e, l(m), c] * h[neighbour[e], c] * sh[e, m]
    """

    def __init__(self, lmax: int):
        super().__init__()
        self.lmax = lmax

    def forward(self, radial: torch.Tensor, h: torch.Tensor, sh: torch.Tensor, centre: torch.Tensor,
                neighbour: torch.Tensor, neighbours_per_atom: int) -> torch.Tensor:
        if neighbours_per_atom > 0:  # training's padded layout (EdgePotential.atom_energy_padded)
            return kernels.conv_padded(radial, h, sh, neighbour, neighbours_per_atom)
        weights = radial * h.index_select(0, neighbour).unsqueeze(1)  # [E, lmax+1, C]
        return kernels.conv_scatter(weights, sh, centre, h.shape[0], self.lmax)


class Interaction(nn.Module):
    """One message-passing layer: scalar states in, scalar states (or atomic energies) out."""

    def __init__(self, channels: int, lmax: int, mlp_hidden: int, out_features: int, avg_num_neighbors: float,
                 products: int):
        super().__init__()
        self.channels = channels
        self.products = products
        self.lmax = lmax
        self.residual = out_features == channels
        self.inv_avg_num_neighbors = 1.0 / avg_num_neighbors
        self.irreps_basis = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])
        self.irreps_products = o3.Irreps([(2 * products, (l, (-1) ** l)) for l in range(lmax + 1)])
        self.conv = ConvScatter(lmax)
        self.mix = o3.Linear(self.irreps_basis, self.irreps_products)
        n_invariants = 2 * channels + (lmax + 1) * products  # h, A_0e, B_0..B_lmax
        self.update = nn.Sequential(
            nn.Linear(n_invariants, mlp_hidden), nn.SiLU(), nn.Linear(mlp_hidden, out_features)
        )

    def forward(
        self, h: torch.Tensor, radial: torch.Tensor, sh: torch.Tensor, centre: torch.Tensor, neighbour: torch.Tensor,
        neighbours_per_atom: int,
    ) -> torch.Tensor:
        return self.readout(h, self.hidden(h, radial, sh, centre, neighbour, neighbours_per_atom))

    def readout(self, h: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The update MLP's last linear layer (+ the residual): new states, or atomic energies."""
        out = self.update[2](hidden)
        if self.residual:
            return h + out
        return out

    def hidden(
        self, h: torch.Tensor, radial: torch.Tensor, sh: torch.Tensor, centre: torch.Tensor, neighbour: torch.Tensor,
        neighbours_per_atom: int,
    ) -> torch.Tensor:
        """The update MLP's hidden layer [N, mlp_hidden]: in the last layer, the features whose linear
        readout is the atom's energy (the student's descriptor)."""
        n_nodes = h.shape[0]
        c, p = self.channels, self.products
        basis = self.conv(radial, h, sh, centre, neighbour, neighbours_per_atom) * self.inv_avg_num_neighbors  # [N, C, M]
        # e3nn's flat layout: one block per l, channel-major within the block.
        flat = torch.cat(
            [basis[:, :, l * l : (l + 1) * (l + 1)].reshape(n_nodes, c * (2 * l + 1)) for l in range(self.lmax + 1)],
            dim=1,
        )
        mixed = self.mix(flat)
        invariants = [h, basis[:, :, 0]]
        start = 0
        for l in range(self.lmax + 1):
            dim = 2 * l + 1
            block = mixed[:, start : start + 2 * p * dim].reshape(n_nodes, 2 * p, dim)
            start += 2 * p * dim
            invariants.append((block[:, :p] * block[:, p:]).sum(-1) / math.sqrt(dim))
        return self.update[1](self.update[0](torch.cat(invariants, dim=1)))


@register_architecture(DEFAULT_ARCHITECTURE, StudentConfig)
@compile_mode("script")
class StudentPotential(EdgePotential):
    """Per-atom energies of a graph of atoms (EdgePotential.forward turns them into the frozen
    contract's energy, forces and virials)."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        self.config = config
        n_species = len(config.elements)
        c, lmax = config.channels, config.lmax
        self.cutoff = float(config.cutoff)
        self.lmax = lmax
        self.channels = c
        self.num_interactions = config.num_interactions
        self.spherical_harmonics = o3.SphericalHarmonics(list(range(lmax + 1)), True, "component")
        self.basis = BesselBasis(config.cutoff, config.n_radial)
        self.envelope = PolynomialCutoff(config.cutoff)
        self.radial = nn.Sequential(
            nn.Linear(config.n_radial, config.radial_hidden),
            nn.SiLU(),
            nn.Linear(config.radial_hidden, config.num_interactions * (lmax + 1) * c),
        )
        self.embedding = nn.Parameter(torch.randn(n_species, c))
        self.interactions = nn.ModuleList(
            [
                Interaction(
                    c,
                    lmax,
                    config.mlp_hidden,
                    1 if t == config.num_interactions - 1 else c,
                    config.avg_num_neighbors,
                    config.products or c,
                )
                for t in range(config.num_interactions)
            ]
        )
        shifts = config.atomic_energies if config.atomic_energies is not None else [0.0] * n_species
        self.register_buffer("atomic_energies", torch.tensor(shifts, dtype=torch.get_default_dtype()))
        self.energy_scale = float(config.energy_scale)
        self.pair_repulsion = bool(config.pair_repulsion)
        self.repulsion = ZBLRepulsion(config.elements, config.cutoff)

    padded_edges = True

    def atom_energy(
        self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor, neighbours_per_atom: int = 0
    ) -> torch.Tensor:
        """Per-node energies [N] from edge vectors r_ij = x_j - x_i (+ shift); edges in the padded
        layout when neighbours_per_atom > 0 (a padding edge lies past the cutoff: its radial weight,
        envelope included, is exactly zero)."""
        return self.atom_energy_and_descriptor(edge_vec, species, edge_index, neighbours_per_atom)[0]

    def atom_energy_and_descriptor(
        self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor, neighbours_per_atom: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-node energies [N] and descriptors [N, mlp_hidden]: the last layer's hidden features."""
        centre = edge_index[0]
        neighbour = edge_index[1]
        length = torch.linalg.vector_norm(edge_vec, dim=1)
        sh = self.spherical_harmonics(edge_vec)
        radial = self.radial(self.basis(length)) * self.envelope(length).unsqueeze(-1)
        # unbind, not radial[:, t]: a slice's backward writes a zero tensor of radial's full size per layer
        radial_per_layer = radial.view(-1, self.num_interactions, self.lmax + 1, self.channels).unbind(1)
        h = self.embedding.index_select(0, species)
        descriptor = h
        t = 0
        last = len(self.interactions) - 1
        for interaction in self.interactions:
            hidden = interaction.hidden(h, radial_per_layer[t], sh, centre, neighbour, neighbours_per_atom)
            if t == last:
                descriptor = hidden
            h = interaction.readout(h, hidden)
            t += 1
        atom_energy = h.squeeze(-1) * self.energy_scale + self.atomic_energies.index_select(0, species)
        if self.pair_repulsion:
            atom_energy = atom_energy + self.repulsion(edge_vec, species, centre, neighbour)
        return atom_energy, descriptor

    def atom_energy_padded(
        self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor, neighbours_per_atom: int
    ) -> torch.Tensor:
        return self.atom_energy(edge_vec, species, edge_index, neighbours_per_atom)
