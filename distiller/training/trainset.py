"""The training set: a teacher-labelled data set read, split, checked against the settings, turned
into graphs with their loss weights, and the energy statistics the student starts from. What
`Trainer` trains on; the same for `mlffd train`, distill and active learning."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch
from ase import units
from ase.data import atomic_numbers, chemical_symbols

from mlffd.data.dataset import open_dataset
from mlffd.errors import MLFFDError
from mlffd.training.config import TrainConfig
from mlffd.training.graphs import Graph, build_graphs


@dataclass
class TrainingSet:
    elements: List[str]
    teacher: dict  # name, version
    fingerprint: str
    temperatures: List[float]  # the sampling temperatures the student sees (validation tests inside and above)
    train_graphs: List[Graph]
    train_units: List[List[int]]  # train_graphs' indices, a displaced pair's two frames together
    valid_graphs: List[Graph]
    statistics: dict  # fit_statistics of the training split
    test_graphs: Dict[str, List[Graph]] = field(default_factory=dict)  # held-out sets by path


def load_training_set(data_path: str, config: TrainConfig, test_paths: Optional[List[str]] = None) -> TrainingSet:
    """`data_path` split by `config` (valid_fraction, seed), its options checked against the frames
    and its loss weights set (sampler, relative force and stress); `test_paths` as graphs alone."""
    dataset = open_dataset(data_path)
    frames = dataset.frames()
    if len(frames) < 2:
        raise MLFFDError(f"dataset {data_path} has {len(frames)} frame(s); training needs at least 2")
    elements = list(dataset.elements)
    train_idx, valid_idx = split_indices(len(frames), config.valid_fraction, config.seed)
    train_elements = {int(z) for i in train_idx for z in frames[i]["numbers"]}
    unseen = {int(z) for i in valid_idx for z in frames[i]["numbers"]} - train_elements
    if unseen:
        names = ", ".join(chemical_symbols[z] for z in sorted(unseen))
        raise MLFFDError(f"element(s) {names} appear in the validation split but never in training")
    check_label_options(config, [frames[i] for i in train_idx], data_path)
    cutoff = config.model_settings()["cutoff"]
    graphs = build_graphs(frames, elements, cutoff, config.sampler_weights)
    train_graphs = [graphs[i] for i in train_idx]
    if config.relative_force_floor is not None:
        set_relative_force_weights(train_graphs, config.relative_force_floor)
    if config.relative_stress_floor is not None:
        set_relative_stress_weights(train_graphs, config.relative_stress_floor)
    for g, i in zip(train_graphs, train_idx):
        g["force_weight"] = g["force_weight"] * float(config.sampler_force_weights.get(frames[i]["sampler"], 1.0))
    return TrainingSet(
        elements=elements,
        teacher={"name": dataset.metadata.get("teacher_name"), "version": dataset.metadata.get("teacher_version")},
        fingerprint=dataset.fingerprint,
        temperatures=sorted({float(frames[i]["temperature"]) for i in train_idx if frames[i]["temperature"] > 0}),
        train_graphs=train_graphs,
        train_units=pair_units([frames[i]["key"] for i in train_idx]),
        valid_graphs=[graphs[i] for i in valid_idx],
        statistics=fit_statistics([frames[i] for i in train_idx], train_graphs, elements),
        test_graphs={path: build_graphs(open_dataset(path).frames(), elements, cutoff) for path in test_paths or []},
    )


def check_label_options(config: TrainConfig, frames: List[dict], data_path: str) -> None:
    """Options that need labels or frame kinds the training frames lack are refused, not ignored."""
    samplers = {f["sampler"] for f in frames}
    for key in ("sampler_weights", "sampler_force_weights"):
        missing = sorted(set(getattr(config, key)) - samplers)
        if missing:
            raise MLFFDError(f"{key} names {', '.join(missing)}, which no training frame of {data_path} "
                             f"has (its samplers: {', '.join(sorted(samplers))})")
    if config.atom_energy_weight > 0 and not any(f["atom_energies"] is not None for f in frames):
        raise MLFFDError(f"atom_energy_weight is set but {data_path} has no per-atom energies (its teacher "
                         "did not report them); set it to 0")


def fit_statistics(frames: List[dict], graphs: List[Graph], elements: List[str]) -> dict:
    """Per-element energy shifts (least squares on composition), force scale, mean neighbour count."""
    counts = np.array([[np.sum(f["numbers"] == atomic_numbers[s]) for s in elements] for f in frames], dtype=float)
    energies = np.array([f["energy"] for f in frames])
    shifts, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    forces = np.concatenate([f["forces"] for f in frames])
    n_atoms = sum(len(g["species"]) for g in graphs)
    n_edges = sum(g["edge_index"].shape[1] for g in graphs)
    return {
        "atomic_energies": [float(x) for x in shifts],
        "energy_scale": float(np.sqrt(np.mean(forces**2))) or 1.0,
        "avg_num_neighbors": max(n_edges / max(n_atoms, 1), 1.0),
    }


def split_indices(n: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, int(round(n * valid_fraction))) if n > 1 else 0
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def relative_weight(frame_sq: float, overall_sq: float, floor: float) -> torch.Tensor:
    """A frame's weight under relative errors: (overall mean square + floor^2) / (its own + floor^2)."""
    return torch.tensor([(overall_sq + floor**2) / (frame_sq + floor**2)], dtype=torch.float64)


def set_relative_force_weights(graphs: List[Graph], floor: float) -> None:
    """Each frame's force weight: relative_weight of its <|F|^2> against all frames' (per atom)."""
    frame_sq = [float(torch.mean(torch.sum(g["forces"] ** 2, dim=1))) for g in graphs]
    n_atoms = [len(g["species"]) for g in graphs]
    overall = float(np.average(frame_sq, weights=n_atoms))
    for g, sq in zip(graphs, frame_sq):
        g["force_weight"] = relative_weight(sq, overall, floor)


def set_relative_stress_weights(graphs: List[Graph], floor_gpa: float) -> None:
    """Each periodic frame's stress weight: relative_weight of its <sigma^2> against all such frames',
    sigma the teacher's stress tensor in GPa; graphs need `volume`."""
    stressed = [g for g in graphs if bool(g["has_stress"].all())]
    if not stressed:
        return
    sq = [float(torch.mean((g["virial"] / g["volume"] / units.GPa) ** 2)) for g in stressed]
    overall = float(np.mean(sq))
    for g, frame_sq in zip(stressed, sq):
        g["stress_weight"] = relative_weight(frame_sq, overall, floor_gpa)


def pair_units(keys: List[str]) -> List[List[int]]:
    """Indices grouped so that both frames of a displaced pair (keys ...a / ...b) stay together."""
    position = {k: i for i, k in enumerate(keys)}
    units, taken = [], set()
    for i, key in enumerate(keys):
        if i in taken:
            continue
        partner = position.get(key[:-1] + "b") if key.endswith("a") and "/pair/" in key else None
        if partner is not None:
            units.append([i, partner])
            taken.update((i, partner))
        else:
            units.append([i])
    return units
