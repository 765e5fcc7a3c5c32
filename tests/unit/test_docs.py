"""The docs say what the code does: the option tables, the map of the code, and links that
resolve inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

from l3tol1.options import markdown_table
from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def between(page: Path, start: str, end: str) -> str:
    """The text between an opening marker comment (to its line's end) and a closing one."""
    found = re.search(rf"<!-- {start}[^\n]*-->\n(.*?)<!-- {end} -->", text(page), re.S)
    assert found is not None, f"{page.name} lost its {start!r} markers"
    return found.group(1)


def anchors(page: Path) -> set[str]:
    """The #anchors of a page's headings, as GitHub makes them."""
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.*)$", text(page), re.M)
    }


class TestOptionTables:
    def test_the_full_table_is_the_option_table(self) -> None:
        """docs/commands.md's options are generated from options.py, and kept so."""
        table = between(DOCS / "commands.md", "options:", "/options")
        assert table == markdown_table(), "regenerate it: l3tol1.options.markdown_table()"

    def test_the_readmes_main_options_are_rows_of_the_table(self) -> None:
        """The README's short table is the full table's header and some of its rows, each as
        generated, in the table's order: a changed default or meaning cannot stay behind."""
        rows = between(README, "main options:", "/main options").splitlines()
        full = markdown_table().splitlines()
        assert rows[:2] == full[:2]
        assert len(rows) > 5, "the README's main options are gone"
        places = [full.index(row) if row in full else -1 for row in rows[2:]]
        assert -1 not in places, f"not a row of the option table: {rows[2 + places.index(-1)]}"
        assert places == sorted(places), "the README's main options are out of the table's order"


class TestCodeMap:
    def test_code_map_names_every_module(self) -> None:
        """Every module of the package appears in docs/internals.md's map of the code, and no
        more."""
        tree = text(DOCS / "internals.md").split("## How the code is organised", 1)[1]
        tree = tree.split("```")[1]
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
    def test_the_pages_are_there(self) -> None:
        """The pages the README promises exist (so that the link test below has them)."""
        names = {page.name for page in PAGES}
        assert {"contract.md", "commands.md", "schemas.md", "internals.md"} <= names

    def test_relative_links_resolve_inside_the_repository(self) -> None:
        """Every relative link (and image) of the README and of docs/*.md names a file of the
        repository, and its #anchor, if any, a heading of that page; the rest are http(s)."""
        for page in PAGES:
            for target in re.findall(r"\]\(([^)\s]+)\)", text(page)):
                where = f"{page.relative_to(ROOT)}: {target}"
                if re.match(r"[a-z]+:", target):
                    assert re.match(r"https?://", target), f"{where}: not a web address"
                    continue
                path_part, _, anchor = target.partition("#")
                path = (page.parent / path_part).resolve() if path_part else page
                assert path.is_relative_to(ROOT), f"{where} leaves the repository"
                assert path.exists(), f"{where} does not exist"
                if anchor:
                    assert path.suffix == ".md", f"{where}: an anchor into a page that is not one"
                    assert anchor in anchors(path), f"{where}: no such heading"

    def test_no_page_points_at_the_contract_outside_the_repository(self) -> None:
        """A clone has no ../shared: the contract is docs/contract.md."""
        for page in PAGES:
            assert "../shared" not in text(page), page.name
