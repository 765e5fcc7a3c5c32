"""The compiled core's Cython modules, one per concept (issue 18); `l3tol1.core._compiled`
assembles them and is what the rest of the package imports. Built by setup.py when a C compiler
is there; the source (.pyx, .pxd) ships in the sdist."""
