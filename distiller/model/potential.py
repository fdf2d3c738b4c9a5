"""The frozen-model contract every student architecture follows (docs/artifact.md).

A student says how much energy each atom has, as a function of its edge vectors r_ij = x_j - x_i
(+ shift): `atom_energy(edge_vec, species, edge_index)`. `forward` turns that into the contract's
energy, forces, virial and per-atom virial with one backward pass through the edge vectors, so
forces are exactly the gradient of the energy (conservative) and the virial follows from the same
edge gradients. This is the one place those formulas live.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from e3nn.util.jit import compile_mode
from torch import nn


@compile_mode("script")
class EdgePotential(nn.Module):
    """Base class of the students: subclasses define `atom_energy` and a `config` with
    `elements`, `cutoff`, `num_interactions` and `to_dict()`."""

    def atom_energy(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Per-node energies [N] (eV)."""
        raise NotImplementedError

    def compute(
        self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor, n_local: int,
        create_graph: bool,
    ) -> Dict[str, torch.Tensor]:
        """Energy of the first `n_local` nodes (the rest are ghosts), and the forces, virial and
        per-atom virial of that energy. `edge_vec` is a leaf that requires grad. Training calls this
        on a batch of frames (all nodes local, create_graph=True so the loss can reach the weights);
        the frozen forward calls it on one structure."""
        atom_energy = self.atom_energy(edge_vec, species, edge_index)[:n_local]
        energy = atom_energy.sum()
        grad_outputs: List[Optional[torch.Tensor]] = [torch.ones_like(energy)]
        edge_grad = torch.autograd.grad([energy], [edge_vec], grad_outputs=grad_outputs, create_graph=create_graph,
                                        allow_unused=True)[0]
        if edge_grad is None:  # no edges at all
            edge_grad = torch.zeros_like(edge_vec)
        forces, virial, atom_virial = self.forces_and_virial(edge_grad, edge_vec.detach(), edge_index,
                                                             species.shape[0])
        return {"energy": energy, "atom_energy": atom_energy, "forces": forces, "virial": virial,
                "atom_virial": atom_virial}

    def forward(
        self,
        pos: torch.Tensor,
        species: torch.Tensor,
        edge_index: torch.Tensor,
        edge_shift: torch.Tensor,
        n_local: int,
    ) -> Dict[str, torch.Tensor]:
        centre = edge_index[0]
        neighbour = edge_index[1]
        edge_vec = (pos.index_select(0, neighbour) - pos.index_select(0, centre) + edge_shift).detach()
        edge_vec.requires_grad_(True)
        out = self.compute(edge_vec, species, edge_index, n_local, False)
        return {
            "energy": out["energy"].detach(),
            "atom_energy": out["atom_energy"].detach(),
            "forces": out["forces"],
            "virial": out["virial"],
            "atom_virial": out["atom_virial"],
        }

    def forces_and_virial(
        self, edge_grad: torch.Tensor, edge_vec: torch.Tensor, edge_index: torch.Tensor, n_nodes: int
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forces on every node, virial, per-atom virial (half of each edge's term to each end)."""
        centre = edge_index[0]
        neighbour = edge_index[1]
        forces = torch.zeros((n_nodes, 3), dtype=edge_vec.dtype, device=edge_vec.device)
        forces.index_add_(0, centre, edge_grad)
        forces.index_add_(0, neighbour, -edge_grad)
        edge_virial = -edge_vec.unsqueeze(2) * edge_grad.unsqueeze(1)  # [E, 3, 3]
        virial = edge_virial.sum(0)
        voigt = torch.stack(
            [
                edge_virial[:, 0, 0],
                edge_virial[:, 1, 1],
                edge_virial[:, 2, 2],
                edge_virial[:, 0, 1],
                edge_virial[:, 0, 2],
                edge_virial[:, 1, 2],
            ],
            dim=1,
        ) * 0.5
        atom_virial = torch.zeros((n_nodes, 6), dtype=edge_vec.dtype, device=edge_vec.device)
        atom_virial.index_add_(0, centre, voigt)
        atom_virial.index_add_(0, neighbour, voigt)
        return forces, virial, atom_virial
