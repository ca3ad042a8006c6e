"""A new setting is one entry in shared/settings.py: the console's form and ``sht settings --help`` pick it up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from textual.widgets import DataTable, Input, Select, Static

from console.screens.settings import FormError, SettingsScreen, read_form
from shared.settings import SETTINGS, CameraSettings, SettingSpec
from sht.cli import build_parser
from tests.console.conftest import wait_until
from tests.console.test_console_snapshots import SIZE, canned_app

NIGHT = SettingSpec("night_mode", "auto", "when to take the IR-cut filter out", "node", "night",
                    choices=("auto", "on", "off"))
BITRATE = SettingSpec("bitrate_kbps", 2000, "the main stream's target bitrate", "node", "kbit/s",
                      minimum=100, maximum=20000)


@pytest.fixture
def new_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(SETTINGS, NIGHT.key, NIGHT)
    monkeypatch.setitem(SETTINGS, BITRATE.key, BITRATE)
    yield


def test_the_cli_help_lists_a_new_setting(new_settings: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["settings", "--help"])
    out = capsys.readouterr().out
    assert "night_mode" in out and "auto | on | off" in out and NIGHT.description in out
    assert "bitrate_kbps" in out and "100 … 20000" in out and BITRATE.description in out


def test_the_form_reads_and_checks_a_new_setting(new_settings: None) -> None:
    fields = {"recording_mode": "motion", "motion_sensitivity": "0.5", "retention_days": "",
              "objects": "person, traffic light", "min_score": "0.5", "threshold": "0.7",
              "notify": "objects", "notify_labels": "", "notify_zones": "", "notify_cooldown_s": "60",
              "night_mode": "off", "bitrate_kbps": "4000"}
    assert read_form(fields)["night_mode"] == "off" and read_form(fields)["bitrate_kbps"] == 4000
    assert read_form(fields)["objects"] == ["person", "traffic light"]
    assert read_form({**fields, "objects": ""})["objects"] == []
    with pytest.raises(FormError, match="objects lists 'car' more than once"):
        read_form({**fields, "objects": "car, car"})
    with pytest.raises(FormError, match="bitrate_kbps must be between 100 and 20000"):
        read_form({**fields, "bitrate_kbps": "50000"})
    assert CameraSettings().to_json()["night_mode"] == "auto"


async def test_the_settings_screen_has_a_field_for_a_new_setting(new_settings: None) -> None:
    app = canned_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.fleet is not None, what="the canned fleet")
        await pilot.press("c")
        screen = app.screen
        assert isinstance(screen, SettingsScreen)
        await wait_until(lambda: screen.cameras == ["cam0", "cam1", "cam2"], what="the cameras' settings")
        await pilot.pause()
        night = screen.query_one("#night_mode", Select)
        assert night.value == "auto"  # the canned store knows nothing of it: the spec's default
        assert screen.query_one("#bitrate_kbps", Input).value == "2000"
        assert str(screen.query_one("#about-night_mode", Static).render()) == NIGHT.description
        table = screen.query_one("#settings-cameras", DataTable)
        assert [str(c.label) for c in table.columns.values()][-2:] == ["night", "kbit/s"]
        assert [str(cell) for cell in table.get_row_at(0)][-2:] == ["auto", "2000"]
