"""CHGNet 0.3.0: weights ship in the wheel; its stress comes in GPa."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from pathlib import Path

from ase.data import chemical_symbols

from mlffd.teachers.adapter import TeacherCalculator, TeacherSpec, package_version, reject_options

ELEMENTS = chemical_symbols[1:95]  # CHGNet's atom embedding: Z = 1..94


def _weights(spec: TeacherSpec) -> tuple[bool, str]:
    found = importlib.util.find_spec("chgnet")
    if found is None or not found.submodule_search_locations:
        return False, "not found"
    root = Path(list(found.submodule_search_locations)[0]) / "pretrained" / "0.3.0"
    files = sorted(root.glob("*.pth.tar")) if root.is_dir() else []
    return (True, str(files[0])) if files else (False, "not found")


def _load(spec: TeacherSpec, device: str, **options) -> TeacherCalculator:
    reject_options(spec, options, set())
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from chgnet.model import CHGNet  # the package is optional: imported on load
        from chgnet.model.dynamics import CHGNetCalculator

        model = CHGNet.load(model_name="0.3.0", use_device=device, verbose=False)
        # CHGNet predicts stress in GPa; stress_weight converts to eV/A^3 (1 eV/A^3 = 160.2177 GPa).
        inner = CHGNetCalculator(model=model, use_device=device, stress_weight=1.0 / 160.21766208)
    return TeacherCalculator(inner, spec, f"chgnet {package_version('chgnet')} CHGNet {model.version}")


SPECS = (TeacherSpec(
    "chgnet", "chgnet", "chgnet", True, tuple(ELEMENTS),
    "CHGNet 0.3.0, MPtrj/PBE; weights ship in the wheel; stress converted GPa -> eV/A^3",
    _load, _weights),)
