"""The README documents every setting."""

from __future__ import annotations

from pathlib import Path

from langscale.settings import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_settings_table() -> None:
    text = README.read_text()
    missing = [
        f"{ENV_PREFIX}{name.upper()}"
        for name in Settings.model_fields
        if f"| `{ENV_PREFIX}{name.upper()}` |" not in text
    ]
    assert not missing, f"undocumented settings: {missing}"


def test_readme_gives_the_two_front_door_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text
