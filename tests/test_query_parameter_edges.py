"""Query parameters at the edge of what they can hold answer 400 naming the parameter."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN, Harness, error
from tests.served import EXECUTABLE

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LAST_DAY = "Expected a day before 9999-12-31"


@pytest.mark.both_stores
@pytest.mark.parametrize(("period", "name"), [
    ({"from": "9999-01-01", "to": "9999-12-31"}, "to"),
    ({"from": "9999-12-31", "to": "9999-12-31"}, "from"),
])
async def test_a_report_ending_on_the_last_calendar_day_is_refused(
    api: Harness, period: dict[str, str], name: str
) -> None:
    response = await api.client.get("/api/reports", params=period, headers=AUTH)
    assert response.json() == error(400, f"Invalid {name}", invalidFields={name: LAST_DAY})


@pytest.mark.both_stores
@pytest.mark.parametrize("tz", ["UTC", "Etc/GMT+12", "Pacific/Kiritimati"])
@pytest.mark.parametrize("group_by", ["day", "hour", "cid"])
async def test_a_report_up_to_the_day_before_the_last_answers(
    api: Harness, tz: str, group_by: str
) -> None:
    response = await api.client.get("/api/reports", headers=AUTH, params={
        "from": "9999-01-01", "to": "9999-12-30", "tz": tz, "group_by": group_by})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["rows"] == []


def test_the_report_command_names_the_day_it_cannot_end_on(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(EXECUTABLE), "report", "--db", str(tmp_path / "events.db"),
         "--from", "9999-01-01", "--to", "9999-12-31"],
        capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (2, f"--to: {LAST_DAY}\n")


@pytest.mark.both_stores
async def test_a_conversions_cursor_must_fit_a_64_bit_row_id(api: Harness) -> None:
    largest = await api.client.get("/api/conversions", headers=AUTH,
                                   params={"cursor": str(2**63 - 1)})
    assert largest.status_code == 200, largest.text
    assert largest.json()["data"] == {"conversions": [], "next_cursor": None}
    for cursor in (2**63, 10**40):
        response = await api.client.get("/api/conversions", headers=AUTH,
                                        params={"cursor": str(cursor)})
        assert response.json() == error(400, "Invalid cursor", invalidFields={
            "cursor": "Expected `int` <= 9223372036854775807"}), cursor


@pytest.mark.parametrize("tz", ["America", "Etc", "__pycache__", "zone.tab", "UTC\x00"])
async def test_a_report_zone_that_names_no_zone_file_is_refused(api: Harness, tz: str) -> None:
    response = await api.client.get("/api/reports", headers=AUTH, params={
        "from": "2026-01-01", "to": "2026-01-02", "tz": tz})
    assert response.json() == error(400, "Invalid tz", invalidFields={
        "tz": "Expected an IANA time zone name"})
