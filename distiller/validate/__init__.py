"""Physics validation (`mlffd validate`): a frozen student against its teacher, property by property.

    from mlffd.validate import validate, rejudge
"""

from __future__ import annotations

from mlffd.validate.validation import rejudge, validate

__all__ = ["validate", "rejudge"]
