"""Blocks the docs repeat from the README must not drift from the ones the tests run (no DB)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def sh_block_after(text: str, heading: str) -> str:
    """The first ```sh block after `heading`."""
    section = text.split(heading, 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_docs_quick_start_is_the_readme_one() -> None:
    # tests/acceptance/test_first_run.py runs the README's block as written; the getting-started
    # page shows the same commands, so it is checked through the README's.
    readme = (ROOT / "README.md").read_text()
    page = (ROOT / "docs" / "getting-started.md").read_text()
    heading = "## Offline, end to end, in four commands"
    assert sh_block_after(readme, "#" + heading) == sh_block_after(page, heading)


def test_the_two_commands_are_the_same_in_the_readme_and_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    page = (ROOT / "docs" / "getting-started.md").read_text()
    heading = "## Set up: two commands"
    assert sh_block_after(readme, heading) == sh_block_after(page, heading)
