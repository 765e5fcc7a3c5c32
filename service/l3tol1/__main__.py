"""`python -m l3tol1` is the same program as the `l3tol1` console script."""

from l3tol1.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
