"""The README says what the code does: its option table and its map of the code."""

from __future__ import annotations

import re

from l3tol1.options import markdown_table
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


class TestReadme:
    def test_option_table_is_the_option_table(self) -> None:
        """The README's options are generated from options.py, and kept so."""
        found = re.search(r"<!-- options:[^\n]*-->\n(.*?)<!-- /options -->", README, re.S)
        assert found is not None, "the README lost its option table markers"
        assert found.group(1) == markdown_table(), "regenerate it: l3tol1.options.markdown_table()"

    def test_code_map_names_every_module(self) -> None:
        """Every module of the package appears in "How the code is organised", and no more."""
        tree = README.split("### How the code is organised", 1)[1].split("```")[1]
        package = ROOT / "service" / "l3tol1"
        modules = {
            str(p.relative_to(package))
            for p in package.rglob("*.py")
            if p.name not in ("__init__.py", "__main__.py")
        }
        named = set()
        folder = ""
        for line in tree.splitlines():
            words = line.split()
            if not words or words[0] == "service/l3tol1/":
                continue
            if words[0].endswith("/"):
                folder = words[0]
                continue
            for word in words:
                if word.endswith(".py") or word.endswith(".py:"):
                    name = word.rstrip(":;,")
                    named.add(
                        name
                        if line.startswith("  ") and not line.startswith("    ")
                        else folder + name
                    )
        assert modules == named, f"missing: {modules - named}, stale: {named - modules}"
