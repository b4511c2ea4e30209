"""The model registry's client: a typed Python API (`Registry`) and the `registry` command line."""

__version__ = "0.1.0"

__all__ = ["__version__"]
