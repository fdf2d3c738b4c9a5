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
    avg_num_neighbors: float = 20.0
    # Fitted from the training data (mlffd.training.trainer.fit_statistics).
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
                neighbour: torch.Tensor) -> torch.Tensor:
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
        self, h: torch.Tensor, radial: torch.Tensor, sh: torch.Tensor, centre: torch.Tensor, neighbour: torch.Tensor
    ) -> torch.Tensor:
        return self.node_update(h, self.atomic_basis(h, radial, sh, centre, neighbour))

    def atomic_basis(
        self, h: torch.Tensor, radial: torch.Tensor, sh: torch.Tensor, centre: torch.Tensor, neighbour: torch.Tensor
    ) -> torch.Tensor:
        """A_i [N, C, M]: the layer's only dependence on the edges."""
        return self.conv(radial, h, sh, centre, neighbour) * self.inv_avg_num_neighbors

    def node_update(self, h: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """The next node states (or atomic energies) from the states and the atomic basis."""
        n_nodes = h.shape[0]
        c, p = self.channels, self.products
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
        out = self.update(torch.cat(invariants, dim=1))
        if self.residual:
            return h + out
        return out


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

    def atom_energy(
        self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor
    ) -> torch.Tensor:
        """Per-node energies [N] from edge vectors r_ij = x_j - x_i (+ shift)."""
        centre = edge_index[0]
        neighbour = edge_index[1]
        length = torch.linalg.vector_norm(edge_vec, dim=1)
        sh = self.spherical_harmonics(edge_vec)
        radial = self.radial(self.basis(length)) * self.envelope(length).unsqueeze(-1)
        radial = radial.view(-1, self.num_interactions, self.lmax + 1, self.channels)
        h = self.embedding.index_select(0, species)
        t = 0
        for interaction in self.interactions:
            h = interaction(h, radial[:, t], sh, centre, neighbour)
            t += 1
        return self._readout(h, species)

    def _readout(self, h: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        return h.squeeze(-1) * self.energy_scale + self.atomic_energies.index_select(0, species)

    # -- training: forces without differentiating twice through the edge features -------------
    @torch.jit.unused
    def edge_geometry(self, edge_vec: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The parameter-free per-edge terms and their derivatives: spherical harmonics Y [E, M] and
        dY/dr_ij [E, M, 3], the radial basis b [E, K] and db/dr, the envelope u [E] and du/dr, the
        unit vectors [E, 3]. Training computes them once per frame (its edges never move)."""
        vec = edge_vec.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            sh = self.spherical_harmonics(vec)
            sh_grad = torch.stack([torch.autograd.grad(sh[:, m].sum(), vec, retain_graph=True)[0]
                                   for m in range(sh.shape[1])], dim=1)
            length = torch.linalg.vector_norm(vec.detach(), dim=1).requires_grad_(True)
            basis = self.basis(length)
            basis_grad = torch.stack([torch.autograd.grad(basis[:, k].sum(), length, retain_graph=True)[0]
                                      for k in range(basis.shape[1])], dim=1)
            envelope = self.envelope(length)
            envelope_grad = torch.autograd.grad(envelope.sum(), length)[0]
        return {"sh": sh.detach(), "sh_grad": sh_grad, "radial_basis": basis.detach(), "radial_basis_grad": basis_grad,
                "envelope": envelope.detach(), "envelope_grad": envelope_grad,
                "edge_unit": (vec / length.unsqueeze(1)).detach()}

    @torch.jit.unused
    def atom_energy_and_edge_grad(self, geometry: Dict[str, torch.Tensor], species: torch.Tensor,
                                  edge_index: torch.Tensor, create_graph: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-node energies and dE/dr_ij from `edge_geometry`, equal to atom_energy and its autograd
        gradient. E depends on r_ij only through each layer's atomic basis A^t of the centre atom, so

            dE/dr_ij = sum_t sum_cm dE/dA^t_i[c, m] h^(t-1)_j[c] d(R^t_ij[l(m), c] Y_ij[m]) / dr_ij / <n>

        with dE/dA^t from one backward pass over the node updates, dR/dr from a forward-mode pass through
        the radial MLP and dY/dr precomputed: one order of differentiation fewer for the loss to go through."""
        centre, neighbour = edge_index[0], edge_index[1]
        first, act, last = self.radial[0], self.radial[1], self.radial[2]
        hidden = first(geometry["radial_basis"])
        hidden_grad = geometry["radial_basis_grad"] @ first.weight.t()
        sig = torch.sigmoid(hidden)
        mlp = last(act(hidden))
        mlp_grad = (hidden_grad * sig * (1.0 + hidden * (1.0 - sig))) @ last.weight.t()  # silu' = s (1 + z (1 - s))
        envelope = geometry["envelope"].unsqueeze(1)
        shape = (-1, self.num_interactions, self.lmax + 1, self.channels)
        radial = (mlp * envelope).view(shape)
        radial_grad = (mlp_grad * envelope + mlp * geometry["envelope_grad"].unsqueeze(1)).view(shape)
        sh = geometry["sh"]
        h = self.embedding.index_select(0, species)
        states, bases = [], []
        for t, interaction in enumerate(self.interactions):
            basis = interaction.atomic_basis(h, radial[:, t], sh, centre, neighbour)
            states.append(h)
            bases.append(basis)
            h = interaction.node_update(h, basis)
        atom_energy = self._readout(h, species)
        basis_grads = torch.autograd.grad(atom_energy.sum(), bases, create_graph=create_graph)
        l_of_m = kernels.sh_degree_index(self.lmax, sh.device)
        edge_grad = torch.zeros_like(geometry["edge_unit"])
        for t, interaction in enumerate(self.interactions):
            # q[e, c, m] = dE/dA^t_i[c, m] h_j[c] / <n>
            q = basis_grads[t].index_select(0, centre) * states[t].index_select(0, neighbour).unsqueeze(2)
            q = q * interaction.inv_avg_num_neighbors
            r_t = radial[:, t].index_select(1, l_of_m).transpose(1, 2)  # [E, C, M]
            dr_t = radial_grad[:, t].index_select(1, l_of_m).transpose(1, 2)
            along = ((q * dr_t).sum(1) * sh).sum(1)  # d/d|r| part, along the unit vector
            edge_grad = edge_grad + along.unsqueeze(1) * geometry["edge_unit"]
            edge_grad = edge_grad + ((q * r_t).sum(1).unsqueeze(2) * geometry["sh_grad"]).sum(1)
        return atom_energy, edge_grad

    @torch.jit.unused
    def compute_from_geometry(self, geometry: Dict[str, torch.Tensor], edge_vec: torch.Tensor, species: torch.Tensor,
                              edge_index: torch.Tensor, create_graph: bool) -> Dict[str, torch.Tensor]:
        """`compute` for training (every node local) from precomputed `edge_geometry`."""
        atom_energy, edge_grad = self.atom_energy_and_edge_grad(geometry, species, edge_index, create_graph)
        forces, virial, atom_virial = self.forces_and_virial(edge_grad, edge_vec, edge_index, species.shape[0])
        return {"energy": atom_energy.sum(), "atom_energy": atom_energy, "forces": forces, "virial": virial,
                "atom_virial": atom_virial}
