"""The teacher registry: one name -> one ASE calculator wrapping a pretrained package model.

Every teacher is a real `ase.calculators.calculator.Calculator` that delegates to the package's own
calculator and returns energy (eV), forces (eV/A) and, for periodic cells, stress in ASE's
convention (Voigt xx,yy,zz,yz,xz,xy; eV/A^3; stress = (1/V) dE/dstrain).

A new teacher is a loader function and a weights finder in this file plus one `register_teacher`
line at the bottom; nothing else in mlffd names teachers.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.data import chemical_symbols

from mlffd.errors import MLFFDError
from mlffd.neighbours import periodic_3d

# Elements covered by each model's trained species list (read from the checkpoints once).
_SEVENNET0_ELEMENTS = (
    "Ac Ag Al Ar As Au B Ba Be Bi Br C Ca Cd Ce Cl Co Cr Cs Cu Dy Er Eu F Fe Ga Gd Ge H He Hf Hg Ho "
    "I In Ir K Kr La Li Lu Mg Mn Mo N Na Nb Nd Ne Ni Np O Os P Pa Pb Pd Pm Pr Pt Pu Rb Re Rh Ru S Sb "
    "Sc Se Si Sm Sn Sr Ta Tb Tc Te Th Ti Tl Tm U V W Xe Y Yb Zn Zr"
).split()
_CHGNET_ELEMENTS = chemical_symbols[1:95]  # CHGNet's atom embedding: Z = 1..94
_ORB_ELEMENTS = chemical_symbols[1:119]  # Orb's atom embedding: Z = 1..118 (training data covers fewer)

ORB_CHECKPOINT_FILES = {
    "orb-v3-conservative-inf-omat": "orb-v3-conservative-inf-omat-20250404.ckpt",
    "orb-v3-conservative-20-omat": "orb-v3-conservative-20-omat-20250404.ckpt",
    "orb-v3-direct-20-omat": "orb-v3-direct-20-omat-20250404.ckpt",
    "orb-v3-direct-inf-omat": "orb-v3-direct-inf-omat-20250404.ckpt",
    "orb-v2": "orb-v2-20241011.ckpt",
}


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    package: str  # distribution name
    module: str  # import name
    conservative: bool
    elements: tuple[str, ...]
    note: str
    load: Callable[..., "TeacherCalculator"]  # load(spec, device, **options)
    weights: Callable[["TeacherSpec"], tuple[bool, str]]  # (available, where they are or how to get them)


class TeacherCalculator(Calculator):
    """A teacher: delegates to the package's own ASE calculator, returns ASE-convention results."""

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(
        self,
        inner: Calculator,
        *,
        teacher_name: str,
        teacher_version: str,
        elements,
        conservative: bool,
        stress_factor: float = 1.0,
        dtype=None,
    ):
        super().__init__()
        self.inner = inner
        self.teacher_name = teacher_name
        self.teacher_version = teacher_version
        self.elements = set(elements)
        self.conservative = bool(conservative)
        self._stress_factor = stress_factor
        self._dtype = dtype  # torch default dtype to use around the inner call (Orb)

    def __repr__(self) -> str:
        return f"<teacher {self.teacher_name} ({self.teacher_version})>"

    def check_elements(self, symbols) -> None:
        missing = sorted(set(symbols) - self.elements, key=chemical_symbols.index)
        if missing:
            raise MLFFDError(
                f"teacher {self.teacher_name} does not cover element(s) {', '.join(missing)}"
            )

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        self.check_elements(atoms.get_chemical_symbols())
        periodic = periodic_3d(atoms)
        props = ["energy", "forces"] + (["stress"] if periodic else [])
        inner_atoms = atoms.copy()
        inner_atoms.calc = None
        if self._dtype is not None:
            import torch

            old = torch.get_default_dtype()
            torch.set_default_dtype(self._dtype)
            try:
                self.inner.calculate(inner_atoms, props, all_changes)
            finally:
                torch.set_default_dtype(old)
        else:
            self.inner.calculate(inner_atoms, props, all_changes)
        r = self.inner.results
        energy = float(np.asarray(r["energy"]).reshape(-1)[0])
        forces = np.asarray(r["forces"], dtype=np.float64).reshape(len(atoms), 3)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces.copy()}
        atom_energies = per_atom_energies(r, energy, len(atoms))
        if atom_energies is not None:
            self.results["energies"] = atom_energies
        if periodic and "stress" in r:
            s = np.asarray(r["stress"], dtype=np.float64)
            if s.shape == (3, 3):
                s = s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            self.results["stress"] = s.reshape(6) * self._stress_factor


def per_atom_energies(results: dict, energy: float, n_atoms: int) -> np.ndarray | None:
    """The inner calculator's per-atom energies (ASE's "energies"), or None when it has none or
    they do not sum to its total energy (a partition that does not is not the teacher's energy)."""
    from mlffd.data.schema import ATOM_ENERGY_SUM_TOL

    values = results.get("energies")
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.shape != (n_atoms,) or not np.isfinite(values).all():
        return None
    if abs(values.sum() - energy) > ATOM_ENERGY_SUM_TOL:
        return None
    return values.copy()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _require(spec: TeacherSpec) -> None:
    if not _installed(spec.module):
        raise MLFFDError(
            f"teacher {spec.name} needs the package {spec.package}, which is not installed "
            f"(pip install {spec.package})"
        )


# ---------------------------------------------------------------------------------- SevenNet


def _sevennet_weights(spec: TeacherSpec) -> tuple[bool, str]:
    try:
        from sevenn.util import pretrained_name_to_path

        path = pretrained_name_to_path("7net-0")
    except Exception:  # noqa: BLE001 - not installed, or a layout this version does not know
        return False, "not found"
    return (True, path) if os.path.isfile(path) else (False, "not found")


def _load_sevennet(spec: TeacherSpec, device: str, **options) -> TeacherCalculator:
    _reject_options(spec, options, set())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sevenn.calculator import SevenNetCalculator

        inner = SevenNetCalculator("7net-0", device=device)
    elements = {chemical_symbols[int(z)] for z in inner.type_map}
    return TeacherCalculator(
        inner,
        teacher_name=spec.name,
        teacher_version=f"sevenn {_version('sevenn')} 7net-0",
        elements=elements,
        conservative=True,
    )


# ---------------------------------------------------------------------------------- CHGNet


def _chgnet_weights(spec: TeacherSpec) -> tuple[bool, str]:
    found = importlib.util.find_spec("chgnet")
    if found is None or not found.submodule_search_locations:
        return False, "not found"
    root = Path(list(found.submodule_search_locations)[0]) / "pretrained" / "0.3.0"
    files = sorted(root.glob("*.pth.tar")) if root.is_dir() else []
    return (True, str(files[0])) if files else (False, "not found")


def _load_chgnet(spec: TeacherSpec, device: str, **options) -> TeacherCalculator:
    _reject_options(spec, options, set())
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        model = CHGNet.load(model_name="0.3.0", use_device=device, verbose=False)
        # CHGNet predicts stress in GPa; stress_weight converts to eV/A^3 (1 eV/A^3 = 160.2177 GPa).
        inner = CHGNetCalculator(model=model, use_device=device, stress_weight=1.0 / 160.21766208)
    return TeacherCalculator(
        inner,
        teacher_name=spec.name,
        teacher_version=f"chgnet {_version('chgnet')} CHGNet {model.version}",
        elements=_CHGNET_ELEMENTS,
        conservative=True,
    )


# ---------------------------------------------------------------------------------- Orb


def orb_env_var(name: str) -> str:
    """Per-model environment variable, e.g. MLFFD_ORB_V3_CONSERVATIVE_INF_OMAT_CHECKPOINT."""
    return "MLFFD_" + name.upper().replace("-", "_") + "_CHECKPOINT"


def orb_checkpoint(name: str, checkpoint: str | None = None) -> tuple[str | None, str]:
    """Where the checkpoint of an Orb teacher comes from: (path or None, how it was found)."""
    if checkpoint:
        return str(checkpoint), "checkpoint option"
    per_model = os.environ.get(orb_env_var(name))
    if per_model:
        return per_model, f"${orb_env_var(name)}"
    generic = os.environ.get("MLFFD_ORB_CHECKPOINT")
    if generic:
        return generic, "$MLFFD_ORB_CHECKPOINT"
    directory = os.environ.get("MLFFD_ORB_CHECKPOINT_DIR")
    if directory:
        return str(Path(directory) / ORB_CHECKPOINT_FILES[name]), "$MLFFD_ORB_CHECKPOINT_DIR"
    return None, "none configured"


def _orb_weights(spec: TeacherSpec) -> tuple[bool, str]:
    path, source = orb_checkpoint(spec.name)
    if path is None:
        return False, f"set {orb_env_var(spec.name)} or MLFFD_ORB_CHECKPOINT(_DIR)"
    return os.path.isfile(path), f"{path} ({source})" + ("" if os.path.isfile(path) else " missing")


def _orb_missing_message(name: str) -> str:
    return (
        f"teacher {name} needs its Orb checkpoint and weights cannot be downloaded here: pass "
        f"checkpoint=PATH, or set {orb_env_var(name)}=PATH (or MLFFD_ORB_CHECKPOINT=PATH, or "
        f"MLFFD_ORB_CHECKPOINT_DIR=DIR holding {ORB_CHECKPOINT_FILES[name]})"
    )


def _load_orb(spec: TeacherSpec, device: str, **options) -> TeacherCalculator:
    _reject_options(spec, options, {"checkpoint", "precision"})
    path, source = orb_checkpoint(spec.name, options.get("checkpoint"))
    if path is None:
        raise MLFFDError(_orb_missing_message(spec.name))
    if "://" in path:
        raise MLFFDError(f"Orb checkpoint must be a local file, got {path!r} ({source})")
    if not os.path.isfile(path):
        raise MLFFDError(f"Orb checkpoint not found: {path} (from {source})")
    precision = options.get("precision", "float32-high")
    if precision not in ("float32-high", "float32-highest", "float64"):
        raise MLFFDError(f"unknown Orb precision {precision!r} (float32-high, float32-highest, float64)")
    import warnings

    import torch

    old_dtype = torch.get_default_dtype()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from orb_models.forcefield import pretrained
            from orb_models.forcefield.calculator import ORBCalculator

            loader = pretrained.ORB_PRETRAINED_MODELS[spec.name]
            try:
                model = loader(weights_path=path, device=device, precision=precision, compile=False)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise MLFFDError(
                    f"checkpoint {path} does not fit the {spec.name} architecture: {first}"
                ) from None
            except (OSError, EOFError, ValueError) as exc:
                raise MLFFDError(f"cannot read Orb checkpoint {path}: {exc}") from None
            model_dtype = torch.get_default_dtype()
            inner = ORBCalculator(model, device=device)
    finally:
        torch.set_default_dtype(old_dtype)  # the Orb loader changes the global default dtype
    return TeacherCalculator(
        inner,
        teacher_name=spec.name,
        teacher_version=f"orb-models {_version('orb-models')} {spec.name} ({Path(path).name})",
        elements=_ORB_ELEMENTS,
        conservative=spec.conservative,
        dtype=model_dtype,
    )


# ---------------------------------------------------------------------------------- MACE


def _mace_weights(spec: TeacherSpec) -> tuple[bool, str]:
    path = os.environ.get("MLFFD_MACE_MODEL")
    if not path:
        return False, "pass model_path=PATH or set MLFFD_MACE_MODEL"
    return os.path.isfile(path), path


def _load_mace(spec: TeacherSpec, device: str, **options) -> TeacherCalculator:
    _reject_options(spec, options, {"model_path", "default_dtype"})
    _require(spec)
    model_path = options.get("model_path") or os.environ.get("MLFFD_MACE_MODEL")
    if not model_path:
        raise MLFFDError("teacher mace needs a local model file: pass model_path=PATH (or set MLFFD_MACE_MODEL)")
    if not os.path.isfile(model_path):
        raise MLFFDError(f"MACE model file not found: {model_path}")
    from mace.calculators import MACECalculator  # type: ignore[import-not-found]

    inner = MACECalculator(
        model_paths=model_path, device=device, default_dtype=options.get("default_dtype", "float64")
    )
    zs = getattr(inner, "z_table", None)
    elements = (
        {chemical_symbols[int(z)] for z in zs.zs} if zs is not None else set(chemical_symbols[1:])
    )
    return TeacherCalculator(
        inner,
        teacher_name=spec.name,
        teacher_version=f"mace-torch {_version('mace-torch')} {Path(model_path).name}",
        elements=elements,
        conservative=True,
    )


# ---------------------------------------------------------------------------------- EMT


def _load_emt(spec: TeacherSpec, device: str, **options) -> TeacherCalculator:
    _reject_options(spec, options, set())
    import ase
    from ase.calculators.emt import EMT

    return TeacherCalculator(EMT(), teacher_name=spec.name, teacher_version=f"ase {ase.__version__} EMT",
                             elements=spec.elements, conservative=True)


def _reject_options(spec: TeacherSpec, options: dict, allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        allowed_s = ", ".join(sorted(allowed)) or "none"
        raise MLFFDError(
            f"teacher {spec.name} does not take option(s) {', '.join(unknown)} (allowed: {allowed_s})"
        )


# ---------------------------------------------------------------------------------- registry

TEACHERS: dict[str, TeacherSpec] = {}


def register_teacher(spec: TeacherSpec) -> TeacherSpec:
    if spec.name in TEACHERS:
        raise ValueError(f"teacher {spec.name!r} is registered twice")
    TEACHERS[spec.name] = spec
    return spec


_ORB_NOTE = "no weights in the wheel; needs a local checkpoint"
register_teacher(TeacherSpec(
    "sevennet-0", "sevenn", "sevenn", True, tuple(_SEVENNET0_ELEMENTS),
    "SevenNet-0 (11Jul2024), MPtrj/PBE, cutoff 5 A; weights ship in the wheel (offline default)",
    _load_sevennet, _sevennet_weights))
register_teacher(TeacherSpec(
    "chgnet", "chgnet", "chgnet", True, tuple(_CHGNET_ELEMENTS),
    "CHGNet 0.3.0, MPtrj/PBE; weights ship in the wheel; stress converted GPa -> eV/A^3",
    _load_chgnet, _chgnet_weights))
register_teacher(TeacherSpec(
    "orb-v3-conservative-inf-omat", "orb-models", "orb_models", True, tuple(_ORB_ELEMENTS),
    f"Orb-v3 conservative, unlimited neighbours, OMat24; {_ORB_NOTE}", _load_orb, _orb_weights))
register_teacher(TeacherSpec(
    "orb-v3-conservative-20-omat", "orb-models", "orb_models", True, tuple(_ORB_ELEMENTS),
    f"Orb-v3 conservative, 20 neighbours, OMat24; {_ORB_NOTE}", _load_orb, _orb_weights))
register_teacher(TeacherSpec(
    "orb-v3-direct-20-omat", "orb-models", "orb_models", False, tuple(_ORB_ELEMENTS),
    f"Orb-v3 direct forces (not conservative), 20 neighbours, OMat24; {_ORB_NOTE}", _load_orb, _orb_weights))
register_teacher(TeacherSpec(
    "orb-v3-direct-inf-omat", "orb-models", "orb_models", False, tuple(_ORB_ELEMENTS),
    f"Orb-v3 direct forces (not conservative), unlimited neighbours, OMat24; {_ORB_NOTE}", _load_orb,
    _orb_weights))
register_teacher(TeacherSpec(
    "orb-v2", "orb-models", "orb_models", False, tuple(_ORB_ELEMENTS),
    f"Orb-v2 direct forces (not conservative), MPtrj+Alexandria; {_ORB_NOTE}", _load_orb, _orb_weights))
register_teacher(TeacherSpec(
    "mace", "mace-torch", "mace", True, tuple(chemical_symbols[1:]),
    "MACE from a local .model file (option model_path or $MLFFD_MACE_MODEL); optional, "
    "mace-torch pins e3nn 0.4.4 so it needs its own environment",
    _load_mace, _mace_weights))
register_teacher(TeacherSpec(
    "emt", "ase", "ase", True, ("H", "C", "N", "O", "Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au"),
    "ASE's EMT: analytic and instant, fcc metals (H, C, N, O for tests only); for trying the pipeline and "
    "for tests, not a foundation model", _load_emt, lambda spec: (True, "analytic, no weights")))


def _spec(name: str) -> TeacherSpec:
    spec = TEACHERS.get(name)
    if spec is None:
        raise MLFFDError(f"unknown teacher {name!r}; known: {', '.join(TEACHERS)}")
    return spec


def teacher_info(name: str) -> dict:
    """What is known about a teacher without loading it."""
    spec = _spec(name)
    installed = _installed(spec.module)
    weights, where = spec.weights(spec) if installed else (False, "not found")
    return {
        "name": spec.name,
        "package": spec.package,
        "installed": installed,
        "version": _version(spec.package) if installed else None,
        "weights_available": bool(installed and weights),
        "weights": where,
        "available": bool(installed and weights),
        "conservative": spec.conservative,
        "elements": list(spec.elements),
        "n_elements": len(spec.elements),
        "note": spec.note if installed else f"{spec.package} not installed; " + spec.note,
    }


def list_teachers() -> list[dict]:
    return [teacher_info(name) for name in TEACHERS]


def teacher_elements(name: str) -> set[str]:
    return set(_spec(name).elements)


def load_teacher(name: str, device: str = "cpu", **options) -> TeacherCalculator:
    """Load a teacher as an ASE calculator. Options: Orb `checkpoint=PATH`, `precision=...`;
    MACE `model_path=PATH`."""
    spec = _spec(name)
    _require(spec)
    if device not in ("cpu",) and not str(device).startswith(("cuda", "mps")):
        raise MLFFDError(f"unknown device {device!r} (cpu, cuda, cuda:N)")
    return spec.load(spec, device, **options)
