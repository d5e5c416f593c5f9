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
