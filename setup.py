"""Build of l3tol1's optional compiled core (metadata is in pyproject.toml).

`pip install .` compiles ``l3tol1.core._compiled`` and its modules (``l3tol1.core.cy.*``)
with Cython (a build requirement) when a C compiler is there; when compiling fails the install
still succeeds, with the pure-Python core (``Extension.optional``). ``L3TOL1_REQUIRE_COMPILED=1``
makes a failed compile fatal (CI, the Docker build stage); ``L3TOL1_NO_COMPILE=1`` skips it.
``L3TOL1_SANITIZE=1`` (`make sanitize`, never an install) compiles for AddressSanitizer and
UBSan, with Cython's bounds checks on.
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext


class build_ext(_build_ext):  # noqa: N801 - setuptools' name
    """When an optional compile fails, delete a .so an earlier build left in build/lib, so that
    it cannot be packed into the new wheel."""

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception:
            stale = self.get_ext_fullpath(ext.name)
            if os.path.exists(stale):
                os.remove(stale)
            raise


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _extensions():
    if _flag("L3TOL1_NO_COMPILE"):
        print("L3TOL1_NO_COMPILE: the pure-Python core only", file=sys.stderr)
        return []
    sanitize = _flag("L3TOL1_SANITIZE")
    required = _flag("L3TOL1_REQUIRE_COMPILED") or sanitize
    # -O3 is portable; not -march=native (another CPU would crash), nor -ffast-math. -g0: a
    # five times smaller library.
    compile_args, link_args = ["-O3", "-g0"], []
    directives = {"language_level": "3"}
    if sanitize:  # every error stops the process, with a stack that names the line
        compile_args = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                        "-fno-omit-frame-pointer", "-g", "-O1",
                        # Python's CFLAGS make signed overflow wrap (-fwrapv), which hides it
                        # from UBSan: the core's arithmetic is checked for it here
                        "-fno-wrapv"]  # fmt: skip
        link_args = ["-fsanitize=address,undefined"]
        directives.update(boundscheck=True, wraparound=True)
    try:
        from Cython.Build import cythonize
    except ImportError:  # only without build isolation
        if required:
            raise
        print("warning: Cython is not importable: the pure-Python core only", file=sys.stderr)
        return []
    sources = ["service/l3tol1/core/_compiled.pyx"]
    sources += sorted(str(p) for p in Path("service/l3tol1/core/cy").glob("*.pyx"))
    try:
        extensions = cythonize(
            [
                Extension(
                    # service/l3tol1/core/cy/feed.pyx -> l3tol1.core.cy.feed
                    ".".join(Path(source).with_suffix("").parts[1:]),
                    [source],
                    extra_compile_args=compile_args,
                    extra_link_args=link_args,
                )
                for source in sources
            ],
            build_dir="build/cython",
            include_path=["service"],  # where `cimport l3tol1.core.cy.records` is found
            compiler_directives=directives,
            quiet=True,
        )
    except Exception as exc:  # Cython could not translate it: the Python core still works
        if required:
            raise
        print(f"warning: the compiled core is not built ({exc})", file=sys.stderr)
        return []
    # cythonize() returns new Extension objects without `optional`: set it afterwards.
    for extension in extensions:
        extension.optional = not required
    return extensions


setup(ext_modules=_extensions(), cmdclass={"build_ext": build_ext})
