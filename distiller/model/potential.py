"""The frozen-model contract every student architecture follows (docs/artifact.md).

A student says how much energy each atom has, as a function of its edge vectors r_ij = x_j - x_i
(+ shift): `atom_energy(edge_vec, species, edge_index)`. `forward` turns that into the contract's
energy, forces, virial and per-atom virial with one backward pass through the edge vectors, so
forces are exactly the gradient of the energy (conservative) and the virial follows from the same
edge gradients. This is the one place those formulas live.

A student may also say what each atom looks like to it (`atom_energy_and_descriptor`): a descriptor
whose distance to the training atoms' is the frozen model's per-atom uncertainty
(`atom_uncertainty`: the squared Mahalanobis distance over the descriptor's dimension, ~1 on the
training atoms, growing where the student extrapolates), once `set_descriptor_statistics` has given
it the training atoms' mean and precision.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from e3nn.util.jit import compile_mode
from torch import nn

from mlffd.model import kernels


def energy_gradient(energy: torch.Tensor, edge_vec: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """dE/d(edge vectors) by one backward pass; zeros when there are no edges."""
    grad_outputs: List[Optional[torch.Tensor]] = [torch.ones_like(energy)]
    edge_grad = torch.autograd.grad([energy], [edge_vec], grad_outputs=grad_outputs, create_graph=create_graph,
                                    allow_unused=True)[0]
    if edge_grad is None:  # no edges at all
        return torch.zeros_like(edge_vec)
    return edge_grad


def descriptor_distance(descriptor: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """Squared Mahalanobis distance of each row of `descriptor` [N, D] to `mean`, over D."""
    centred = descriptor - mean
    return (centred @ precision * centred).sum(1) / centred.shape[1]


@compile_mode("script")
class EdgePotential(nn.Module):
    """Base class of the students: subclasses define `atom_energy` and a `config` with
    `elements`, `cutoff`, `num_interactions` and `to_dict()`, and an `atomic_energies` buffer
    (whose dtype is the model's)."""

    # Whether `atom_energy_padded` is implemented: training then lays a batch's edges out atom by atom,
    # the same number per atom (mlffd.training.graphs.pad_edges), for dense per-atom kernels.
    padded_edges = False

    def __init__(self):
        super().__init__()
        # empty until set_descriptor_statistics (export): the frozen model then has no uncertainty
        self.register_buffer("descriptor_mean", torch.zeros(0), persistent=False)
        self.register_buffer("descriptor_precision", torch.zeros(0, 0), persistent=False)

    def atom_energy(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Per-node energies [N] (eV)."""
        raise NotImplementedError

    def atom_energy_padded(
        self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor, neighbours_per_atom: int
    ) -> torch.Tensor:
        """atom_energy of edges laid out atom by atom, `neighbours_per_atom` per atom (edge i*K + s is
        atom i's s-th), the padding edges from an atom to itself past the cutoff: the same numbers."""
        raise NotImplementedError

    def atom_energy_and_descriptor(
        self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor, neighbours_per_atom: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-node energies [N] and descriptors [N, D]; D = 0 for a student that has none."""
        if neighbours_per_atom > 0:
            atom_energy = self.atom_energy_padded(edge_vec, species, edge_index, neighbours_per_atom)
        else:
            atom_energy = self.atom_energy(edge_vec, species, edge_index)
        return atom_energy, atom_energy.new_zeros((atom_energy.shape[0], 0))

    def set_descriptor_statistics(self, mean: torch.Tensor, precision: torch.Tensor) -> None:
        """The training atoms' descriptor mean [D] and precision [D, D] (inverse covariance), from
        which `atom_uncertainty` measures; not in the state_dict (training never needs them)."""
        dtype = self.atomic_energies.dtype
        self.register_buffer("descriptor_mean", mean.to(dtype), persistent=False)
        self.register_buffer("descriptor_precision", precision.to(dtype), persistent=False)

    def atom_uncertainty(self, descriptor: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of each atom's descriptor to the training atoms', over D
        (~1 on the training atoms); an empty tensor when the model has no statistics."""
        if self.descriptor_precision.numel() == 0:
            return descriptor.new_zeros((0,))
        return descriptor_distance(descriptor.detach(), self.descriptor_mean, self.descriptor_precision)

    def compute(
        self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor, n_local: int,
        create_graph: bool, neighbours_per_atom: int = 0,
    ) -> Dict[str, torch.Tensor]:
        """Energy of the first `n_local` nodes (the rest are ghosts), and the forces, virial and
        per-atom virial of that energy, and the local nodes' descriptors. `edge_vec` is a leaf that
        requires grad. Training calls this on a batch of frames (all nodes local, create_graph=True
        so the loss can reach the weights; edges padded when the student has `padded_edges`); the
        frozen forward calls it on one structure."""
        atom_energy, descriptor = self.atom_energy_and_descriptor(edge_vec, species, edge_index, neighbours_per_atom)
        atom_energy = atom_energy[:n_local]
        energy = atom_energy.sum()
        edge_grad = energy_gradient(energy, edge_vec, create_graph)
        forces, virial, atom_virial = self.forces_and_virial(edge_grad, edge_vec.detach(), edge_index,
                                                             species.shape[0])
        return {"energy": energy, "atom_energy": atom_energy, "forces": forces, "virial": virial,
                "atom_virial": atom_virial, "descriptor": descriptor[:n_local]}

    def edge_vectors(self, edge_vec: torch.Tensor) -> torch.Tensor:
        """The contract's float64 edge vectors in the model dtype, as a leaf that requires grad."""
        if edge_vec.dtype != torch.float64:
            raise RuntimeError("mlffd model: edge_vec must be float64 (r_ij = x_j - x_i + shift, formed from float64 "
                               "positions; docs/artifact.md)")
        vec = edge_vec.to(self.atomic_energies.dtype).detach()
        vec.requires_grad_(True)
        return vec

    def forward(
        self,
        edge_vec: torch.Tensor,
        species: torch.Tensor,
        edge_index: torch.Tensor,
        n_local: int,
    ) -> Dict[str, torch.Tensor]:
        out = self.compute(self.edge_vectors(edge_vec), species, edge_index, n_local, False)
        return {
            "energy": out["energy"].detach(),
            "atom_energy": out["atom_energy"].detach(),
            "forces": out["forces"],
            "virial": out["virial"],
            "atom_virial": out["atom_virial"],
            "atom_uncertainty": self.atom_uncertainty(out["descriptor"]),
        }

    def forces_and_virial(
        self, edge_grad: torch.Tensor, edge_vec: torch.Tensor, edge_index: torch.Tensor, n_nodes: int
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forces on every node, virial, per-atom virial (half of each edge's term to each end)."""
        return kernels.edge_forces_virial(edge_grad, edge_vec, edge_index[0], edge_index[1], n_nodes)
