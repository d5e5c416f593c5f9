"""mypy on the package as it is installed, with pyproject.toml's settings (strict).

The wheel maps the top-level `models/` and `migrations/` folders into the package as
`worker.models` and `worker.migrations` (`[tool.setuptools.package-dir]`), and the editable
install does it with an import hook that mypy cannot follow. So this builds that layout as a tree
of symbolic links in `.mypy-tree/`, runs mypy on it, and maps the paths in its report back to the
repository's files. `make lint` and `tests/unit/test_code_health.py` run it:

    python -m tests.typecheck            # exit status: mypy's
    python -m tests.typecheck --imports  # import-linter's contracts (pyproject.toml), same tree

import-linter reads the same tree: in the repository, `worker.models` is not under worker/, so
an import of it would look like an import of the package root.
"""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / ".mypy-tree"
PACKAGE = "worker"


def package_dirs() -> dict[str, Path]:
    """Subpackage name -> the repository folder it comes from (pyproject's package-dir)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in config.get("package-dir", {}).items()}


def build_tree(tree: Path = TREE) -> dict[str, str]:
    """The installed layout as symbolic links in `tree`; returns tree path prefix -> repository
    prefix."""
    shutil.rmtree(tree, ignore_errors=True)
    (tree / PACKAGE).mkdir(parents=True)
    for child in (ROOT / PACKAGE).iterdir():
        if child.name != "__pycache__":
            (tree / PACKAGE / child.name).symlink_to(child)
    prefixes = {f"{TREE.name}/{PACKAGE}/": f"{PACKAGE}/"}
    for name, folder in package_dirs().items():
        relative = Path(*name.split("."))
        if len(relative.parts) != 2 or relative.parts[0] != PACKAGE:
            raise SystemExit(
                f"package-dir {name!r}: only direct subpackages of {PACKAGE} are mapped"
            )
        (tree / relative).symlink_to(folder)
        prefixes[f"{tree.name}/{relative.as_posix()}/"] = f"{folder.relative_to(ROOT).as_posix()}/"
    return prefixes


def lint_imports(tree: Path = TREE) -> subprocess.CompletedProcess[str]:
    """import-linter's contracts (pyproject.toml) on the tree built by `build_tree(tree)`."""
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("lint-imports")),
            str(ROOT / "pyproject.toml"),
        ],
        cwd=tree,  # the tree's worker/ comes first on sys.path, before the editable install's
        capture_output=True,
        text=True,
        check=False,
    )


def main() -> int:
    prefixes = build_tree()
    if sys.argv[1:] == ["--imports"]:
        proc = lint_imports()
        print(proc.stdout + proc.stderr, end="")
        return proc.returncode
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", f"{TREE.name}/{PACKAGE}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    # Longest prefix first: worker/models/ before worker/.
    ordered = sorted(prefixes.items(), key=lambda item: len(item[0]), reverse=True)
    for line in (proc.stdout + proc.stderr).splitlines():
        for tree_prefix, repo_prefix in ordered:
            if line.startswith(tree_prefix):
                line = repo_prefix + line[len(tree_prefix) :]
                break
        print(line)
    return proc.returncode


if __name__ == "__main__":
    os.chdir(ROOT)
    raise SystemExit(main())
