"""Labelled frames as graphs, batched into one disjoint graph (NequIP-style dict of named tensors)."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

from mlffd.errors import MLFFDError
from mlffd.neighbours import NeighbourList, check_overlap
from mlffd.voigt import TO_MATRIX

Graph = Dict[str, torch.Tensor]


def frame_to_graph(frame: dict, species_of: Dict[int, int], neighbours: NeighbourList,
                   frame_weight: float = 1.0) -> Graph:
    """One dataset frame (mlffd.data.dataset.Dataset.frame) to a graph with labels and its loss weight."""
    numbers = np.asarray(frame["numbers"])
    try:
        species = np.array([species_of[int(z)] for z in numbers], dtype=np.int64)
    except KeyError as exc:
        raise MLFFDError(f"element {chemical_symbols[exc.args[0]]} is not among the model's elements") from None
    if frame.get("forces") is None:
        raise MLFFDError(f"frame {frame.get('key', '?')} has no forces")
    edge_index, edge_vec = neighbours.graph(frame["positions"], frame["cell"], frame["pbc"])
    if len(edge_vec):  # a structure the calculator refuses is no training data either
        try:
            check_overlap(float(np.sqrt(np.einsum("ij,ij->i", edge_vec, edge_vec).min())))
        except MLFFDError as exc:
            raise MLFFDError(f"frame {frame.get('key', '?')!r}: {exc}") from None
    n = len(numbers)
    stress = frame.get("stress")
    atom_energies = frame.get("atom_energies")
    pbc = np.asarray(frame["pbc"], dtype=bool)
    has_stress = stress is not None and bool(pbc.all())
    volume = abs(float(np.linalg.det(frame["cell"])))  # 0 for a cell that is not 3D
    virial = np.zeros((3, 3))
    if has_stress:
        sigma = np.asarray(stress, dtype=np.float64)[list(TO_MATRIX)].reshape(3, 3)  # eV/A^3
        virial = -sigma * volume
    return {
        "species": torch.from_numpy(species),
        "edge_index": torch.from_numpy(edge_index),
        "edge_vec": torch.from_numpy(edge_vec),
        "energy": torch.tensor([frame["energy"]], dtype=torch.float64),
        "forces": torch.tensor(frame["forces"], dtype=torch.float64),
        "virial": torch.tensor(virial, dtype=torch.float64).unsqueeze(0),
        "volume": torch.tensor([volume], dtype=torch.float64),
        "has_stress": torch.tensor([has_stress]),
        "n_atoms": torch.tensor([n]),
        "atom_energy": torch.tensor(np.full(n, np.nan) if atom_energies is None else atom_energies,
                                    dtype=torch.float64),
        "has_atom_energy": torch.full((n,), atom_energies is not None),
        "frame_weight": torch.tensor([frame_weight], dtype=torch.float64),
        "force_weight": torch.ones(1, dtype=torch.float64),
        "stress_weight": torch.ones(1, dtype=torch.float64),
    }


def collate(graphs: Sequence[Graph], dtype: torch.dtype = torch.float32) -> Graph:
    """Concatenate graphs into one; adds `batch` (frame of each atom)."""
    offsets = np.cumsum([0] + [len(g["species"]) for g in graphs[:-1]])
    edge_index = torch.cat([g["edge_index"] + int(o) for g, o in zip(graphs, offsets)], dim=1)
    batch = torch.cat([torch.full((len(g["species"]),), k, dtype=torch.long) for k, g in enumerate(graphs)])
    out: Graph = {
        "edge_index": edge_index,
        "batch": batch,
        "species": torch.cat([g["species"] for g in graphs]),
        "has_stress": torch.cat([g["has_stress"] for g in graphs]),
        "n_atoms": torch.cat([g["n_atoms"] for g in graphs]),
        "has_atom_energy": torch.cat([g["has_atom_energy"] for g in graphs]),
    }
    for key in ("edge_vec", "forces", "atom_energy", "frame_weight", "force_weight", "stress_weight", "volume"):
        out[key] = torch.cat([g[key] for g in graphs]).to(dtype)
    out["energy"] = torch.cat([g["energy"] for g in graphs]).to(dtype)
    out["virial"] = torch.cat([g["virial"] for g in graphs]).to(dtype)
    return out


def pad_edges(batch: Graph, cutoff: float) -> Graph:
    """The batch with its edges laid out atom by atom, K per atom, K the most any atom has: edge
    i*K + s is atom i's s-th, and each atom's remaining slots hold padding edges to itself at twice
    the cutoff, where every term of the student vanishes (EdgePotential.atom_energy_padded). Adds
    `neighbours_per_atom` (K). The same energies, forces and virials as the edge list."""
    centre, neighbour = batch["edge_index"]
    n_nodes = len(batch["species"])
    if len(centre) == 0:
        return batch
    order = torch.sort(centre, stable=True).indices
    centre, neighbour = centre[order], neighbour[order]
    degree = torch.bincount(centre, minlength=n_nodes)
    k = int(degree.max())
    slot = torch.arange(len(centre)) - (torch.cumsum(degree, 0) - degree).index_select(0, centre)
    position = centre * k + slot
    atoms = torch.arange(n_nodes).repeat_interleave(k)
    edge_index = torch.stack([atoms, atoms.clone()])
    edge_index[1, position] = neighbour
    edge_vec = batch["edge_vec"].new_zeros((n_nodes * k, 3))
    edge_vec[:, 0] = 2.0 * cutoff
    edge_vec[position] = batch["edge_vec"][order]
    return dict(batch, edge_index=edge_index, edge_vec=edge_vec, neighbours_per_atom=torch.tensor(k))


def predict(model, graph: Graph, create_graph: bool) -> Dict[str, torch.Tensor]:
    """Energies, forces and virials per frame of a batched graph (edges padded or not), by the
    model's own `compute` (the code the frozen model runs), summed per frame."""
    edge_vec = graph["edge_vec"].detach().requires_grad_(True)
    n_nodes = len(graph["species"])
    neighbours_per_atom = int(graph["neighbours_per_atom"]) if "neighbours_per_atom" in graph else 0
    out = model.compute(edge_vec, graph["species"], graph["edge_index"], n_nodes, create_graph, neighbours_per_atom)
    return per_frame(graph, out["atom_energy"], out["forces"], out["atom_virial"])


class AtomEnergies(torch.nn.Module):
    """A student's per-atom energies as a module's forward, the function torch.func.functional_call
    evaluates under other weights (named `model.<parameter>`)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                neighbours_per_atom: int) -> torch.Tensor:
        return self.model.atom_energy_and_descriptor(edge_vec, species, edge_index, neighbours_per_atom)[0]


def predict_functional(energies: AtomEnergies, weights: Dict[str, torch.Tensor], graph: Graph,
                       neighbours_per_atom: int) -> Dict[str, torch.Tensor]:
    """`predict` of the student under `weights` (AtomEnergies' parameters and buffers by name), its edge
    gradient taken by torch.func.grad instead of autograd: a pure function of the weights, which
    torch.compile traces through the second derivative the force loss needs (mlffd.training.step).
    The student's own atom energies and `forces_and_virial`: the same numbers as `predict`."""
    species, edge_index = graph["species"], graph["edge_index"]

    def total_energy(edge_vec: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        arguments = (edge_vec, species, edge_index, neighbours_per_atom)
        atom_energy = torch.func.functional_call(energies, weights, arguments)
        return atom_energy.sum(), atom_energy

    edge_grad, atom_energy = torch.func.grad(total_energy, has_aux=True)(graph["edge_vec"])
    forces, _, atom_virial = energies.model.forces_and_virial(edge_grad, graph["edge_vec"], edge_index, len(species))
    return per_frame(graph, atom_energy, forces, atom_virial)


def per_frame(graph: Graph, atom_energy: torch.Tensor, forces: torch.Tensor,
              atom_virial: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per-atom energies and virials of a batch summed per frame (virials as 3x3)."""
    n_frames = len(graph["n_atoms"])
    # a product with the atoms' one-hot frame membership, not index_add: inductor's C++ backend fails
    # to compile the scatter into a single frame (torch 2.13), and at a few frames per batch it is as cheap
    membership = torch.nn.functional.one_hot(graph["batch"], n_frames).to(atom_energy.dtype)  # [N, frames]
    energy = atom_energy @ membership
    voigt = membership.T @ atom_virial
    return {"energy": energy, "forces": forces, "virial": voigt[:, list(TO_MATRIX)].view(n_frames, 3, 3),
            "atom_energy": atom_energy}


def build_graphs(frames: List[dict], elements: List[str], cutoff: float,
                 sampler_weights: Dict[str, float] | None = None) -> List[Graph]:
    """Graphs of the frames; each frame's loss weight is that of its sampler (1 if not named)."""
    species_of = {atomic_numbers[s]: k for k, s in enumerate(elements)}
    neighbours = NeighbourList(cutoff)
    weights = sampler_weights or {}
    return [frame_to_graph(f, species_of, neighbours, float(weights.get(f.get("sampler"), 1.0))) for f in frames]
