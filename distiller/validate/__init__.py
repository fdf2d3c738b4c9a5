"""Validation (`mlffd validate`) and benchmarks (`mlffd bench`) of a frozen student.

    from mlffd.validate import validate, bench
"""

from __future__ import annotations

from mlffd.validate.benchmark import bench
from mlffd.validate.validation import rejudge, validate

__all__ = ["validate", "rejudge", "bench"]
