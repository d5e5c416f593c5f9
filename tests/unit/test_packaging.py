"""pyproject.toml lists every package, so a new subpackage cannot silently miss the wheel."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = {"worker": ROOT / "worker", **{k: ROOT / v for k, v in config["package-dir"].items()}}
    found = set()
    for name, folder in mapping.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            found.add(".".join((name, *parts)))
    assert found == set(config["packages"])


def test_the_license_is_an_spdx_string_that_setuptools_takes_without_a_warning() -> None:
    """The table form (`license = { text = "MIT" }`) made every install print setuptools'
    `project.license` deprecation warning three times (issue 22.6); the string form needs
    setuptools 77, in the build requirements and in the test extra that builds the wheel."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["license"] == "MIT"
    floors = [
        *config["build-system"]["requires"],
        *config["project"]["optional-dependencies"]["test"],
    ]
    assert [r for r in floors if r.startswith("setuptools")] == ["setuptools>=77.0.1"] * 2
