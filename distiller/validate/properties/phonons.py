"""Phonons by finite displacements (ase.phonons) in a supercell wider than twice the cutoff.

ase.phonons rather than phonopy: it is already a dependency, and it takes any ASE calculator, so
the student and the teacher (through the reference cache) go through the very same code. It does
not use symmetry, so it costs 6 displacements per atom of the primitive cell (13 teacher calls for
Si): affordable for the small cells of a validation. Frequencies are in THz; an imaginary mode is
reported as a negative frequency, and flagged when it lies away from Gamma.

Student and teacher are compared at the q-points commensurate with the supercell, where the
supercell's force constants give the exact frequencies whatever their range. Between those points
the bands are a Fourier interpolation, exact only for force constants shorter than the supercell: a
many-layer teacher (SevenNet-0 sees 25 A) gets its acoustic branches bent, even below zero, near Gamma
by that truncation, which a one-layer student does not share. The bands along the path are drawn and
their largest deviation is reported, without a goal.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

import numpy as np

from mlffd.validate.properties.crystal import Crystal, Equilibrium, repeats_for_width
from mlffd.validate.properties.protocol import GOALS, Context, Property, failed_row, row

EV_PER_THZ = 4.135667696e-3  # h * 1 THz in eV
DISPLACEMENT = 0.01  # A
IMAGINARY_THZ = -0.1  # below this a mode counts as imaginary (acoustic modes at Gamma are ~0)
# Near Gamma a supercell truncates long-range force constants (a many-layer teacher sees 25 A), which
# bends the acoustic branches slightly below zero there: imaginary modes count only farther out.
NEAR_GAMMA = 0.1  # of the largest |q| on the path
BAND_POINTS = 120
DOS_KPOINTS = (16, 16, 16)


def band_path(crystal: Crystal):
    """The standard path of the starting primitive cell; its reduced k-points are shared by every
    model, so the bands of two models are compared at the same points."""
    return crystal.primitive.cell.bandpath(npoints=BAND_POINTS)


def commensurate_qpoints(supercell) -> np.ndarray:
    """The q-points (reduced, of the primitive cell) whose phonons a supercell of these repeats
    resolves exactly: i/n along each axis."""
    axes = [np.arange(n) / n for n in supercell]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def phonons(eq: Equilibrium, calc, path, width: float) -> dict:
    """Frequencies at the supercell's commensurate q-points, bands along `path`, the DOS on a
    k-point grid, and the supercell used."""
    from ase.phonons import Phonons

    supercell = repeats_for_width(eq.primitive, width)
    with tempfile.TemporaryDirectory(prefix="mlffd-phonons-") as tmp:
        ph = Phonons(eq.primitive, calc, supercell=supercell, delta=DISPLACEMENT, name=os.path.join(tmp, "ph"))
        ph.run()
        ph.read(acoustic=True)
        bands = ph.band_structure(path.kpts) / EV_PER_THZ  # [k, branch]
        exact = ph.band_structure(commensurate_qpoints(supercell)) / EV_PER_THZ
        dos = ph.get_dos(kpts=DOS_KPOINTS).sample_grid(npts=300, width=0.1 * EV_PER_THZ)
    q = np.linalg.norm(path.kpts @ eq.primitive.cell.reciprocal(), axis=1)
    away = q > NEAR_GAMMA * q.max()
    return {
        "supercell": list(supercell),
        "commensurate_THz": exact.tolist(),
        "bands_THz": bands.tolist(),
        "dos_THz": (dos.get_energies() / EV_PER_THZ).tolist(),
        "dos_weights": dos.get_weights().tolist(),
        "min_THz": float(bands.min()),
        "max_THz": float(bands.max()),
        "imaginary": bool(bands[away].min() < IMAGINARY_THZ),
    }


def band_deviation(teacher: dict, student: dict) -> dict:
    """Max and mean |nu_student - nu_teacher| over the commensurate q-points and all branches, and
    the max along the path's (interpolated) bands (THz)."""
    exact = np.abs(np.asarray(student["commensurate_THz"]) - np.asarray(teacher["commensurate_THz"]))
    path = np.abs(np.asarray(student["bands_THz"]) - np.asarray(teacher["bands_THz"]))
    return {"max_abs_dev_THz": float(exact.max()), "mean_abs_dev_THz": float(exact.mean()),
            "path_max_abs_dev_THz": float(path.max())}


def _compute(eq: Equilibrium, calc, ctx: Context) -> dict:
    # ase.phonons prints warnings about ~1e-8 THz imaginary acoustic modes at Gamma to stdout
    with contextlib.redirect_stdout(io.StringIO()):
        return phonons(eq, calc, band_path(ctx.crystal), ctx.width)


def _compare(result: dict, ctx: Context) -> None:
    """The path's axis for plots, and the bands' deviation when the student has bands."""
    path = band_path(ctx.crystal)
    x, special_x, labels = path.get_linear_kpoint_axis()
    result["path"] = path.path
    result["axis"] = {"x": x.tolist(), "special_x": special_x.tolist(), "labels": list(labels)}
    if "failure" not in result["student"]:
        result.update(band_deviation(result["teacher"], result["student"]))


def _rows(result: dict) -> list[dict]:
    t, s = result["teacher"], result["student"]
    if "failure" in s:
        return [failed_row("phonons", "THz", None, s["failure"])]
    return [
        row("phonons: max abs deviation", "THz", None, None, result["max_abs_dev_THz"], "THz",
            GOALS["phonon_max_THz"], signed=False),
        row("phonons: mean abs deviation", "THz", None, None, result["mean_abs_dev_THz"], "THz", None, signed=False),
        row("phonon bands along the path: max abs deviation", "THz", None, None, result["path_max_abs_dev_THz"],
            "THz", None, signed=False),
        row("highest phonon", "THz", t["max_THz"], s["max_THz"], s["max_THz"] - t["max_THz"], "THz", None),
        row("imaginary modes", "", t["imaginary"], s["imaginary"], None, "", None, ok=s["imaginary"] == t["imaginary"]),
    ]


PHONONS = Property("phonons", _compute, _rows, _compare)
