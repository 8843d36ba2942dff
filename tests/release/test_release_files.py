"""Release hygiene: license, citation, changelog, one version number everywhere."""

from __future__ import annotations

import datetime
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from seqtransfer.cli import main

ROOT = Path(__file__).resolve().parents[2]

#: the top-level keys of the Citation File Format 1.2 schema
CFF_KEYS = {
    "abstract", "authors", "cff-version", "commit", "contact", "date-released", "doi", "identifiers", "keywords",
    "license", "license-url", "message", "preferred-citation", "references", "repository", "repository-artifact",
    "repository-code", "title", "type", "url", "version",
}  # fmt: skip
APACHE_SECTIONS = (
    "1. Definitions.",
    "2. Grant of Copyright License.",
    "3. Grant of Patent License.",
    "4. Redistribution.",
    "5. Submission of Contributions.",
    "6. Trademarks.",
    "7. Disclaimer of Warranty.",
    "8. Limitation of Liability.",
    "9. Accepting Warranty or Additional Liability.",
)
PAPER = "Graph-guided Sequential Transfer for Medical Image Segmentation"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_version_is_written_once_and_read_from_the_metadata() -> None:
    import seqtransfer

    version = pyproject()["version"]
    assert importlib.metadata.version("seqtransfer") == version  # the installed metadata is this project's
    assert seqtransfer.__version__ == version
    literal = re.compile(rf"""["']{re.escape(version)}["']""")
    written = [p for p in (ROOT / "src").rglob("*.py") if literal.search(p.read_text())]
    assert written == [], f"the version is written in {written}; pyproject.toml is its only place"


def test_version_option_prints_the_metadata_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
        raise SystemExit(0)
    assert (info.value.code or 0) == 0
    captured = capsys.readouterr()
    assert captured.out == importlib.metadata.version("seqtransfer") + "\n"
    assert captured.err == ""


def test_license_is_the_full_apache_2_text() -> None:
    assert pyproject()["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    positions = [text.index(section) for section in APACHE_SECTIONS]
    assert positions == sorted(positions)
    for phrase in (
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "END OF TERMS AND CONDITIONS",
        "APPENDIX: How to apply the Apache License to your work.",
        'Licensed under the Apache License, Version 2.0 (the "License");',
        "limitations under the License.",
    ):
        assert phrase in text, phrase
    assert 9000 < len(text) < 12500  # the whole text, not an excerpt (the standard file is ~11.3 kB)


def test_citation_cff_is_valid_and_cites_software_and_paper() -> None:
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert set(cff) <= CFF_KEYS, set(cff) - CFF_KEYS
    for key in ("cff-version", "message", "title", "authors"):  # required by CFF 1.2
        assert cff.get(key), key
    assert cff["cff-version"] == "1.2.0"
    assert cff["type"] == "software" and cff["title"] == "seqtransfer"
    assert cff["version"] == importlib.metadata.version("seqtransfer") == pyproject()["version"]
    assert cff["license"] == pyproject()["license"]
    assert cff["authors"] == [{"name": "The seqtransfer developers"}]
    datetime.date.fromisoformat(cff["date-released"])  # a string in ISO form, as the schema wants
    articles = [r for r in cff["references"] if r.get("type") == "article"]
    assert [r["title"] for r in articles] == [PAPER]
    assert [a["family-names"] for a in articles[0]["authors"]] == ["Yang", "Zhang", "Wang", "Li"]


def test_changelog_has_unreleased_and_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.MULTILINE)
    assert headings[:2] == ["Unreleased", pyproject()["version"]]
    assert headings[-1] == "0.1.0"
    released = re.search(r"^## \[0\.1\.0\] - (\d{4}-\d{2}-\d{2})$", text, flags=re.MULTILINE)
    assert released is not None
    assert released.group(1) == yaml.safe_load((ROOT / "CITATION.cff").read_text())["date-released"]


def test_readme_says_how_to_cite_both() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## How to cite", 1)[1].split("\n## ", 1)[0]
    version = importlib.metadata.version("seqtransfer")
    assert f"version {version}" in section and f"version = {{{version}}}" in section
    assert "The seqtransfer developers" in section and "CITATION.cff" in section
    assert section.count(PAPER) == 2  # the text and the BibTeX entry
    assert "http://" not in text and "https://" not in text  # no link out of the repository
