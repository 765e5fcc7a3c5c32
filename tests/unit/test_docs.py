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


class TestLinks:
    # the behaviour contract, beside the repository by design (README's first paragraph)
    OUTSIDE = frozenset({"../shared/SPEC.md"})

    def test_relative_links_stay_in_the_repository_and_exist(self) -> None:
        """Every relative link of the README and of docs/*.md names a file of the repository
        (the contract aside), and every #anchor of the README one of its headings."""
        headings = {
            re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", README, re.M)
        }
        pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        assert ROOT / "docs" / "schemas.md" in pages
        for page in pages:
            for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
                if re.match(r"[a-z]+://", target) or target in self.OUTSIDE:
                    continue
                if target.startswith("#"):
                    assert page.name == "README.md" and target[1:] in headings, target
                    continue
                path = (page.parent / target.split("#")[0]).resolve()
                assert path.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"
                assert path.exists(), f"{page.name}: {target} does not exist"
