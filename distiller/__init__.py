"""mlffd: distil a large machine-learning force field into a small, fast e3nn student."""

__version__ = "0.1.0"

__all__ = ["MLFFDCalculator", "__version__"]


def __getattr__(name):
    # Imported lazily so that `import mlffd` stays cheap for the CLI and the data tools.
    if name == "MLFFDCalculator":
        from mlffd.calculator import MLFFDCalculator

        return MLFFDCalculator
    raise AttributeError(name)
