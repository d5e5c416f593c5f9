"""The settings reference in the docs is generated from `Settings` and kept current (no database).

The page is docs/configuration/settings.md, written by `python -m tools.settings_doc`; these tests
fail when a setting lacks its one-line help, when the committed page is stale, and when a setting
has no row on it.
"""

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest

from tools import settings_doc
from worker.core.settings import Settings

PAGE = settings_doc.PAGE


def test_every_setting_has_one_line_help() -> None:
    for f in fields(Settings):
        text = f.metadata.get("help", "")
        assert text.strip() and "\n" not in text, f"{f.metadata['env']} has no one-line help"


def test_the_committed_settings_page_is_current() -> None:
    assert PAGE.read_text() == settings_doc.render(), (
        f"{PAGE} is stale: run `python -m tools.settings_doc` and commit the page"
    )


def test_every_setting_has_a_row_on_the_settings_page() -> None:
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \|", PAGE.read_text(), flags=re.MULTILINE)
    assert rows == [f.metadata["env"] for f in fields(Settings)]


def test_a_row_says_what_the_setting_accepts_its_default_and_meaning() -> None:
    rows = {
        line.split(" | ")[0].strip("| `"): line
        for line in PAGE.read_text().splitlines()
        if line.startswith("| `")
    }
    assert rows["WORKER_CONCURRENCY"] == (
        "| `WORKER_CONCURRENCY` | a whole number > 0 | `4` | jobs in flight per process "
        "(`--concurrency`) |"
    )
    assert "| unset |" in rows["DATABASE_URL"] and "| `true` |" in rows["WORKER_LISTEN"]


def test_a_setting_without_help_is_refused() -> None:
    @dataclass(frozen=True)
    class Undocumented:
        concurrency: int = field(default=4, metadata={"env": "WORKER_CONCURRENCY"})

    with pytest.raises(settings_doc.MissingHelpError, match="WORKER_CONCURRENCY: every setting"):
        settings_doc.render(Undocumented)


def test_check_fails_on_a_stale_page_and_passes_on_a_current_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "settings.md"
    page.write_text(settings_doc.render().replace("`4`", "`5`", 1))
    assert settings_doc.main(["--check"], page=page) == 1
    assert "is stale: run `python -m tools.settings_doc`" in capsys.readouterr().err
    assert settings_doc.main([], page=page) == 0  # rewrites it
    assert settings_doc.main(["--check"], page=page) == 0
    assert page.read_text() == settings_doc.render()
