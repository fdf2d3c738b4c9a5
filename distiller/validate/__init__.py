"""Validation (`mlffd validate`) and benchmarks (`mlffd bench`) of a frozen student.

    from mlffd.validate import validate, bench
"""

from __future__ import annotations


def validate(*args, **kwargs) -> dict:
    """See `mlffd.validate.validation.validate`."""
    from mlffd.validate.validation import validate as _validate

    return _validate(*args, **kwargs)


def bench(*args, **kwargs) -> dict:
    """See `mlffd.validate.benchmark.bench`."""
    from mlffd.validate.benchmark import bench as _bench

    return _bench(*args, **kwargs)


__all__ = ["validate", "bench"]
