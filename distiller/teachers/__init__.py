"""Teachers: pretrained force fields wrapped as ASE calculators (see docs/teachers.md)."""

from mlffd.teachers.orb import orb_checkpoint, orb_env_var
from mlffd.teachers.registry import (
    TEACHERS,
    TeacherCalculator,
    list_teachers,
    load_teacher,
    teacher_elements,
    teacher_info,
)

__all__ = [
    "TEACHERS",
    "TeacherCalculator",
    "list_teachers",
    "load_teacher",
    "orb_checkpoint",
    "orb_env_var",
    "teacher_elements",
    "teacher_info",
]
