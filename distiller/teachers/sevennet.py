"""SevenNet-0 (sevenn): the offline default teacher; its weights ship in the wheel."""

from __future__ import annotations

import os
import warnings

from ase.data import chemical_symbols

from mlffd.teachers.adapter import TeacherCalculator, TeacherSpec, package_version, reject_options

# The species SevenNet-0's checkpoint was trained on (read from it once).
ELEMENTS = (
    "Ac Ag Al Ar As Au B Ba Be Bi Br C Ca Cd Ce Cl Co Cr Cs Cu Dy Er Eu F Fe Ga Gd Ge H He Hf Hg Ho "
    "I In Ir K Kr La Li Lu Mg Mn Mo N Na Nb Nd Ne Ni Np O Os P Pa Pb Pd Pm Pr Pt Pu Rb Re Rh Ru S Sb "
    "Sc Se Si Sm Sn Sr Ta Tb Tc Te Th Ti Tl Tm U V W Xe Y Yb Zn Zr"
).split()


def _weights(spec: TeacherSpec) -> tuple[bool, str]:
    try:
        from sevenn.util import pretrained_name_to_path

        path = pretrained_name_to_path("7net-0")
    except Exception:  # noqa: BLE001 - not installed, or a layout this version does not know
        return False, "not found"
    return (True, path) if os.path.isfile(path) else (False, "not found")


def _load(spec: TeacherSpec, device: str, **options) -> TeacherCalculator:
    reject_options(spec, options, set())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sevenn.calculator import SevenNetCalculator  # the package is optional: imported on load

        inner = SevenNetCalculator("7net-0", device=device)
    return TeacherCalculator(inner, spec, f"sevenn {package_version('sevenn')} 7net-0",
                             elements={chemical_symbols[int(z)] for z in inner.type_map})


SPECS = (TeacherSpec(
    "sevennet-0", "sevenn", "sevenn", True, tuple(ELEMENTS),
    "SevenNet-0 (11Jul2024), MPtrj/PBE, cutoff 5 A; weights ship in the wheel (offline default)",
    _load, _weights),)
