"""Every relative link and image in the README, docs/ and the committed report points to a file in the
repository (anchors are checked against the target's headings)."""
import re
from pathlib import Path

import pytest

from helpers import REPO

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def documents():
    return [REPO / "README.md", *sorted((REPO / "docs").glob("**/*.md")), REPO / "reports" / "comparison.md"]


def anchors(path):
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", CODE.sub("", path.read_text(encoding="utf-8")), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def links(path):
    return LINK.findall(CODE.sub("", path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(document):
    assert document.is_file()
    broken = []
    for target in links(document):
        if re.match(r"[a-z]+:", target):                  # https:, mailto: ...: not a file of the repository
            continue
        file, _, anchor = target.partition("#")
        resolved = (document.parent / file).resolve() if file else document
        if not resolved.exists() or REPO.resolve() not in resolved.parents and resolved != REPO.resolve():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(target)
    assert not broken, f"{document.relative_to(REPO)}: links to nothing in the repository: {broken}"


def test_the_link_check_finds_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) ![chart](missing.png) `[not a link](nowhere)`\n", encoding="utf-8")
    assert links(page) == ["#title", "missing.png"]
    assert anchors(page) == {"title"}


def test_the_readme_shows_the_committed_runs_summary_table():
    """The table in the README is the report's, as committed: a run that changes one changes the other."""
    def table_rows(text, after):
        rows = text.split(after, 1)[1].lstrip("\n").split("\n\n", 1)[0].splitlines()
        return [row for row in rows if row.startswith("|")]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    report = (REPO / "reports" / "comparison.md").read_text(encoding="utf-8")
    shown = table_rows(readme, "![MAE gap of each candidate to the fine-tuned baseline](plots/png/gap.png)\n")
    assert len(shown) > 2 and shown == table_rows(report, "## Summary (sorted by validation MAE)\n")
