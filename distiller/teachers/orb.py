"""Orb (orb-models): no weights in the wheel, so a local checkpoint, found by option or environment."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from ase.data import chemical_symbols

from mlffd.errors import MLFFDError
from mlffd.teachers.adapter import TeacherCalculator, TeacherSpec, package_version, reject_options

ELEMENTS = chemical_symbols[1:119]  # Orb's atom embedding: Z = 1..118 (training data covers fewer)

CHECKPOINT_FILES = {
    "orb-v3-conservative-inf-omat": "orb-v3-conservative-inf-omat-20250404.ckpt",
    "orb-v3-conservative-20-omat": "orb-v3-conservative-20-omat-20250404.ckpt",
    "orb-v3-direct-20-omat": "orb-v3-direct-20-omat-20250404.ckpt",
    "orb-v3-direct-inf-omat": "orb-v3-direct-inf-omat-20250404.ckpt",
    "orb-v2": "orb-v2-20241011.ckpt",
}


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
        return str(Path(directory) / CHECKPOINT_FILES[name]), "$MLFFD_ORB_CHECKPOINT_DIR"
    return None, "none configured"


def _weights(spec: TeacherSpec) -> tuple[bool, str]:
    path, source = orb_checkpoint(spec.name)
    if path is None:
        return False, f"set {orb_env_var(spec.name)} or MLFFD_ORB_CHECKPOINT(_DIR)"
    return os.path.isfile(path), f"{path} ({source})" + ("" if os.path.isfile(path) else " missing")


def _missing_message(name: str) -> str:
    return (
        f"teacher {name} needs its Orb checkpoint and weights cannot be downloaded here: pass "
        f"checkpoint=PATH, or set {orb_env_var(name)}=PATH (or MLFFD_ORB_CHECKPOINT=PATH, or "
        f"MLFFD_ORB_CHECKPOINT_DIR=DIR holding {CHECKPOINT_FILES[name]})"
    )


def _load(spec: TeacherSpec, device: str, **options) -> TeacherCalculator:
    reject_options(spec, options, {"checkpoint", "precision"})
    path, source = orb_checkpoint(spec.name, options.get("checkpoint"))
    if path is None:
        raise MLFFDError(_missing_message(spec.name))
    if "://" in path:
        raise MLFFDError(f"Orb checkpoint must be a local file, got {path!r} ({source})")
    if not os.path.isfile(path):
        raise MLFFDError(f"Orb checkpoint not found: {path} (from {source})")
    precision = options.get("precision", "float32-high")
    if precision not in ("float32-high", "float32-highest", "float64"):
        raise MLFFDError(f"unknown Orb precision {precision!r} (float32-high, float32-highest, float64)")
    old_dtype = torch.get_default_dtype()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from orb_models.forcefield import pretrained  # the package is optional: imported on load
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
    return TeacherCalculator(inner, spec, f"orb-models {package_version('orb-models')} {spec.name} ({Path(path).name})",
                             dtype=model_dtype)


_NOTE = "no weights in the wheel; needs a local checkpoint"
SPECS = tuple(TeacherSpec(name, "orb-models", "orb_models", conservative, tuple(ELEMENTS), f"{note}; {_NOTE}",
                          _load, _weights) for name, conservative, note in (
    ("orb-v3-conservative-inf-omat", True, "Orb-v3 conservative, unlimited neighbours, OMat24"),
    ("orb-v3-conservative-20-omat", True, "Orb-v3 conservative, 20 neighbours, OMat24"),
    ("orb-v3-direct-20-omat", False, "Orb-v3 direct forces (not conservative), 20 neighbours, OMat24"),
    ("orb-v3-direct-inf-omat", False, "Orb-v3 direct forces (not conservative), unlimited neighbours, OMat24"),
    ("orb-v2", False, "Orb-v2 direct forces (not conservative), MPtrj+Alexandria"),
))
