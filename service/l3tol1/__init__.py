"""l3tol1: turn an exchange's Level 3 order feed into exact Level 1 (best bid/ask) rows."""

__all__ = ["__version__"]

__version__ = "0.1.0"
