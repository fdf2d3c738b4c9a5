"""What a property module gives the suite: its record (`Property`) and its table rows.

A static property is computed on each model's own relaxed crystal by the same code for the teacher
and the student (`compute`), and turned into rows of property | unit | teacher | student | deviation
| goal | ok (`rows`). Adding one is its module (the physics, a `Property` record) plus its line in
`STATIC_PROPERTIES` (suite.py); MD, which runs both sides together, is the suite's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from mlffd.validate.properties.crystal import Crystal

# The project's fidelity goal (student vs teacher); relative goals in %, absolute in the unit.
GOALS = {
    "a0": 0.2, "v0": 0.2, "B": 2.0, "Cij": 2.0, "phonon_max_THz": 0.3, "vacancy_eV": 0.05,
    "md_force_rel_mae_in_range": 3.0, "md_force_rel_mae_above_range": 5.0, "rdf": 2.0,
}


@dataclass(frozen=True)
class Context:
    """What a property may need besides a model's equilibrium and calculator."""

    crystal: Crystal
    width: float  # A: defect and phonon cells are at least this wide (twice the student's cutoff)
    seed: int
    surface_miller: Optional[tuple]


@dataclass(frozen=True)
class Property:
    name: str
    compute: Callable  # (equilibrium, calculator, Context) -> one side's result
    rows: Callable  # ({"teacher": ..., "student": ..., extras}) -> list of table rows
    # (result, Context) -> None: what needs both sides (e.g. the phonon bands' deviation)
    compare: Optional[Callable] = None


def relative(s, t):
    """Student against teacher in % of the teacher; None when either is missing or t is 0."""
    if s is None or t is None or t == 0 or not np.isfinite(s) or not np.isfinite(t):
        return None
    return 100.0 * (s - t) / abs(t)


def row(prop: str, unit: str, teacher, student, deviation, dev_unit: str, goal, ok=None, signed=True) -> dict:
    """`deviation` is student minus teacher (`signed`) or an error measure that is never negative."""
    if ok is None and goal is not None and deviation is not None:
        ok = bool(abs(deviation) <= goal)
    return {"property": prop, "unit": unit, "teacher": teacher, "student": student, "deviation": deviation,
            "deviation_unit": dev_unit, "goal": goal, "ok": ok, "signed": signed}


def relative_row(prop: str, unit: str, teacher, student, goal_key: Optional[str]) -> dict:
    return row(prop, unit, teacher, student, relative(student, teacher), "%", GOALS.get(goal_key))


def failed_row(prop: str, unit: str, teacher, reason: str) -> dict:
    out = row(prop, unit, teacher, None, None, "", None, False)
    out["note"] = reason
    return out
