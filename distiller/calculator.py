"""`MLFFDCalculator`: the ASE calculator for a frozen mlffd model (the one-line swap for a teacher).

    calc = MLFFDCalculator("model.pt")        # instead of calc = TeacherCalculator(...)

Models exported with descriptor statistics also give each atom's uncertainty (`uncertainties`, and
its largest over the frame, `uncertainty`): ~1 on the training atoms, growing where the student
extrapolates. `uncertainty_threshold` warns (or raises, `on_uncertain="raise"`) above it.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.data import chemical_symbols

from mlffd.errors import MLFFDError
from mlffd.neighbours import VerletList, check_numbers, check_overlap
from mlffd.export.load import load_frozen
from mlffd.voigt import voigt
# What ASE's compare_atoms looks at besides cell and pbc: Atoms.arrays keys.
STATE_ARRAYS = tuple(k for k in all_changes if k not in ("cell", "pbc"))


def _same_array(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def _no_uncertainty(model_path: str) -> str:
    return (f"{model_path} carries no uncertainty (exported from a run trained before mlffd kept descriptor "
            "statistics): retrain and export it")


class UncertaintyWarning(UserWarning):
    """A frame in which some atom's uncertainty is above the calculator's threshold."""


class MLFFDCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "uncertainty",
                              "uncertainties"]

    # Forces are the gradient of the model's energy, so autograd must be on even when the caller
    # runs under torch.no_grad() or torch.inference_mode() (and the model's weights and inputs must
    # not be inference tensors): both methods switch it on for themselves.
    @torch.inference_mode(False)
    @torch.enable_grad()
    def __init__(self, model_path: str, device: str = "cpu", threads: int | None = None, skin: float = 0.5,
                 uncertainty_threshold: float | None = None, on_uncertain: str = "warn", **kwargs):
        super().__init__(**kwargs)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise MLFFDError(f"threads must be a positive integer (or None for torch's default), got {threads!r}")
        if on_uncertain not in ("warn", "raise"):
            raise MLFFDError(f"on_uncertain must be 'warn' or 'raise', got {on_uncertain!r}")
        if uncertainty_threshold is not None and not (isinstance(uncertainty_threshold, (int, float))
                                                      and np.isfinite(uncertainty_threshold)
                                                      and uncertainty_threshold > 0):
            raise MLFFDError(f"uncertainty_threshold must be a number > 0 (training atoms sit near 1), "
                             f"got {uncertainty_threshold!r}")
        if threads:
            torch.set_num_threads(threads)
        self.model, self.metadata = load_frozen(model_path, device)
        self.model_path = str(model_path)
        self.device = torch.device(device)
        self.threads, self.skin = threads, skin
        # One calculator shared by threads: the Verlet list's buffers, the species cache and
        # ASE's check_state/results are one state, so a whole property request holds the lock.
        self._lock = threading.RLock()
        self.dtype = torch.float64 if self.metadata["dtype"] == "float64" else torch.float32
        self.cutoff = float(self.metadata["cutoff"])
        self.elements = list(self.metadata["elements"])
        self._species_of = {chemical_symbols.index(s): k for k, s in enumerate(self.elements)}
        # Rebuilt only after an atom moved more than skin / 2 (MD steps reuse it); the edge vectors
        # are formed from float64 positions every call (the artifact takes float64 edge vectors).
        self._neighbours = VerletList(self.cutoff, skin)
        self._numbers: np.ndarray | None = None
        self._species: torch.Tensor | None = None
        self.uncertainty_threshold, self.on_uncertain = uncertainty_threshold, on_uncertain
        if uncertainty_threshold is not None and not self.metadata.get("uncertainty"):
            raise MLFFDError(_no_uncertainty(model_path) + ", or drop uncertainty_threshold")
        self.calculations = 0  # numbers the frames in the threshold's message

    # copy.deepcopy and pickle: the TorchScript module and the neighbour list's C state cannot be
    # copied, so a copy loads the model again from its path (results and atoms travel).
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in ("model", "metadata", "_neighbours", "_lock", "_species", "_numbers"):
            state.pop(name, None)
        return state

    @torch.inference_mode(False)
    @torch.enable_grad()
    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.model, self.metadata = load_frozen(self.model_path, str(self.device))
        self._neighbours = VerletList(self.cutoff, self.skin)
        self._lock = threading.RLock()
        self._numbers = self._species = None

    def get_property(self, name, atoms=None, allow_calculation=True):
        with self._lock:
            return super().get_property(name, atoms, allow_calculation)

    def _species_tensor(self, numbers: np.ndarray) -> torch.Tensor:
        # Cached: the composition does not change between MD steps.
        if self._numbers is None or not np.array_equal(numbers, self._numbers):
            check_numbers(numbers)
            unknown = sorted({chemical_symbols[z] for z in numbers if z not in self._species_of})
            if unknown:
                raise MLFFDError(
                    f"element(s) {', '.join(unknown)} not in the model (model elements: {', '.join(self.elements)})"
                )
            species = np.array([self._species_of[z] for z in numbers], dtype=np.int64)
            self._species = torch.from_numpy(species).to(self.device)
            self._numbers = numbers.copy()
        return self._species

    def check_state(self, atoms, tol=1e-15):
        # An ASE MD step asks ~3 times; compare_atoms (isclose on every array) costs ~0.1 ms a
        # call at 512 atoms. Bitwise-unchanged state is no change under any tolerance; anything
        # else goes to ASE's own comparison.
        last = self.atoms
        if (last is not None and np.array_equal(last.cell.array, atoms.cell.array)
                and np.array_equal(last.pbc, atoms.pbc)
                and all(_same_array(last.arrays.get(k), atoms.arrays.get(k)) for k in STATE_ARRAYS)):
            return []
        return super().check_state(atoms, tol)

    @torch.inference_mode(False)
    @torch.enable_grad()
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        with self._lock:
            self._calculate(atoms, properties, system_changes)

    def _calculate(self, atoms, properties, system_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        positions = atoms.get_positions()
        if not np.all(np.isfinite(positions)):
            raise MLFFDError("positions contain NaN or infinite values")
        species = self._species_tensor(atoms.numbers)
        edge_index, edge_vec = self._neighbours.edges(positions, atoms.cell.array, atoms.pbc)
        if len(edge_vec):
            check_overlap(float(np.sqrt(np.einsum("ij,ij->i", edge_vec, edge_vec).min())))
        out = self.model(
            torch.from_numpy(edge_vec).to(self.device),
            species,
            torch.from_numpy(edge_index).to(self.device),
            len(atoms),
        )
        energy = float(out["energy"])
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = out["atom_energy"].detach().cpu().double().numpy()
        self.results["forces"] = out["forces"].detach().cpu().double().numpy()
        if atoms.pbc.all():
            virial = out["virial"].detach().cpu().double().numpy()
            virial = 0.5 * (virial + virial.T)
            stress = -virial / atoms.get_volume()
            self.results["stress"] = voigt(stress)
        elif "stress" in properties:
            raise MLFFDError("stress needs a cell periodic in all three directions")
        self.calculations += 1
        # models exported before the uncertainty existed return no such key, those without statistics an empty one
        uncertainties = out.get("atom_uncertainty", torch.zeros(0)).detach().cpu().double().numpy()
        if len(uncertainties) == len(atoms) and len(atoms):
            self.results["uncertainties"] = uncertainties
            self.results["uncertainty"] = float(uncertainties.max())
            self._check_uncertainty(uncertainties, atoms)
        elif "uncertainty" in properties or "uncertainties" in properties:
            raise MLFFDError(_no_uncertainty(self.model_path))

    def _check_uncertainty(self, uncertainties: np.ndarray, atoms) -> None:
        if self.uncertainty_threshold is None or not len(atoms) or uncertainties.max() <= self.uncertainty_threshold:
            return
        worst = int(uncertainties.argmax())
        train = self.metadata["uncertainty"]["train_quantiles"]
        message = (f"{self.model_path}: frame {self.calculations} ({atoms.get_chemical_formula()}): atom {worst} "
                   f"({atoms[worst].symbol}) has uncertainty {uncertainties[worst]:.3g} > threshold "
                   f"{self.uncertainty_threshold:g} ({int((uncertainties > self.uncertainty_threshold).sum())} atoms "
                   f"above; training atoms: median {train['median']:.2g}, max {train['max']:.3g}): the student "
                   "is extrapolating here")
        if self.on_uncertain == "raise":
            self.reset()  # no results kept for this frame: asking again raises again
            raise MLFFDError(message)
        warnings.warn(message, UncertaintyWarning, stacklevel=2)
