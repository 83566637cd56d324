"""Every numbered check of the event endpoint, in order, with its exact answer."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import CID, OTHER_CID, PID, Harness, error


async def post_event(api: Harness, body: Any) -> tuple[int, dict[str, Any]]:
    response = await api.client.post("/api/event/trigger", json=body)
    return response.status_code, response.json()


# The checks before the transaction's (the body, the fields, the campaign) never reach the
# store; the rest run on both stores (both_stores).

# 1. body is not a JSON object / form

@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"a string"', b"{\"cid\": ",
                                  b"\xff\xfe"])
async def test_body_that_is_not_a_json_object_is_invalid_json(api: Harness, body: bytes) -> None:
    response = await api.client.post("/api/event/trigger", content=body,
                                     headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == error(400, "Invalid JSON body")


# 2. required fields, in order

@pytest.mark.parametrize(("body", "message", "missing"), [
    ({}, "cid is required", ["cid", "event_id", "transaction_id"]),
    ({"cid": "", "event_id": "e", "transaction_id": "t"}, "cid is required", ["cid"]),
    ({"cid": None, "event_id": "e", "transaction_id": "t"}, "cid is required", ["cid"]),
    ({"cid": CID}, "event_id is required", ["event_id", "transaction_id"]),
    ({"cid": CID, "event_id": "", "transaction_id": "t"}, "event_id is required", ["event_id"]),
    ({"cid": CID, "event_id": "quote_viewed"}, "transaction_id is required",
     ["transaction_id"]),
])
async def test_missing_required_field_names_the_first_in_order(
    api: Harness, body: dict[str, Any], message: str, missing: list[str]
) -> None:
    assert await post_event(api, body) == (400, error(400, message, missingFields=missing))


async def test_required_fields_are_checked_before_field_types(api: Harness) -> None:
    status, body = await post_event(api, {"cid": CID, "revenue": "lots"})
    assert (status, body["message"]) == (400, "event_id is required")


# 3. the form of every field

INVALID = [
    ("revenue", "abc"),
    ("revenue", -1),
    ("revenue", "-0.01"),
    ("revenue", "NaN"),
    ("revenue", "Infinity"),
    ("revenue", True),
    ("revenue", "1e13"),
    ("amount", "twelve"),
    ("cost", -5),
    ("adSpend", "x"),
    ("min_price", "-1"),
    ("conversion_date", "2026-13-01"),
    ("conversion_date", "yesterday"),
    ("conversion_date", "2026-02-30 10:00:00"),
    ("conversion_timezone", "CET"),
    ("cost_operation", "multiply"),
    ("tcpa_consent", 2),
    ("tcpa_consent", "yes"),
    ("tcpa_consent_date", "2026/01/31"),
    ("sub1", "x" * 256),
    ("sub1", 12),
    ("utm_source", ["a"]),
    ("transaction_id", 12345),
    ("event_id", "e" * 256),
    ("pid", {"id": 1}),
    ("first_name", {"nested": "object"}),
    ("colors", ["red", "blue"]),
    ("notes", "n" * 256),
]


@pytest.mark.parametrize(("field", "value"), INVALID)
async def test_field_of_wrong_type_or_form_is_invalid(
    api: Harness, field: str, value: Any
) -> None:
    body = {"cid": CID, "event_id": "quote_viewed", "transaction_id": "txn_x", field: value}
    status, answer = await post_event(api, body)
    assert status == 400
    assert answer["message"] == f"Invalid {field}"
    assert list(answer["invalidFields"]) == [field]
    assert answer["invalidFields"][field]  # says why
    assert set(answer) == {"status", "type", "message", "invalidFields"}


async def test_every_invalid_field_is_listed(api: Harness) -> None:
    body = {"cid": CID, "event_id": "quote_viewed", "transaction_id": "txn_x",
            "revenue": "abc", "sub2": 5, "conversion_timezone": "XYZ", "extra": [1]}
    status, answer = await post_event(api, body)
    assert status == 400
    assert set(answer["invalidFields"]) == {"revenue", "sub2", "conversion_timezone", "extra"}


@pytest.mark.parametrize(("field", "value"), [
    ("revenue", "45.00"), ("revenue", 0), ("amount", 1.5), ("tcpa_consent", "1"),
    ("tcpa_consent", 0), ("conversion_date", "2026-01-31"),
    ("conversion_date", "2026-01-31 23:59:59"), ("conversion_timezone", "akst"),
    ("cost_operation", "substract"), ("first_name", "Ada"), ("age", 37), ("vip", True),
    ("score", 4.5),
])
async def test_valid_field_forms_pass_the_type_check(
    api: Harness, field: str, value: Any
) -> None:
    body = {"cid": CID, "event_id": "quote_viewed", "transaction_id": "txn_unknown",
            field: value}
    status, answer = await post_event(api, body)
    # Reaching check 7 proves the field passed check 3.
    assert (status, answer["message"]) == (400, "Invalid transaction_id for this campaign")


async def test_field_types_are_checked_before_the_campaign(api: Harness) -> None:
    body = {"cid": "cmp_missing", "event_id": "quote_viewed", "transaction_id": "t",
            "revenue": "abc"}
    assert (await post_event(api, body))[1]["message"] == "Invalid revenue"


# 4. campaign

@pytest.mark.both_stores
async def test_unknown_campaign_is_invalid_cid(api: Harness) -> None:
    body = {"cid": "cmp_missing", "event_id": "not_an_event", "transaction_id": "t"}
    assert await post_event(api, body) == (400, error(400, "Invalid cid"))


# 5. event of the campaign

@pytest.mark.both_stores
async def test_event_not_configured_for_campaign(api: Harness) -> None:
    body = {"cid": CID, "event_id": "not_an_event", "transaction_id": "t", "pid": "nobody"}
    assert await post_event(api, body) == (400, error(400, "Invalid event_id for this campaign"))


@pytest.mark.both_stores
async def test_event_of_another_campaign_is_not_this_campaigns(api: Harness) -> None:
    body = {"cid": OTHER_CID, "event_id": "sale_completed", "transaction_id": "t"}
    assert await post_event(api, body) == (400, error(400, "Invalid event_id for this campaign"))


# 6. source

@pytest.mark.both_stores
async def test_unknown_pid_is_invalid(api: Harness) -> None:
    body = {"cid": CID, "event_id": "quote_viewed", "transaction_id": "t", "pid": "src_nobody"}
    assert await post_event(api, body) == (400, error(400, "Invalid pid"))


@pytest.mark.both_stores
async def test_inactive_source_is_refused_before_the_transaction_is_looked_up(
    api: Harness,
) -> None:
    body = {"cid": CID, "event_id": "quote_viewed", "transaction_id": "t", "pid": "src_paused"}
    assert await post_event(api, body) == (403, error(403, "Source Inactive"))


@pytest.mark.both_stores
async def test_pid_defaults_to_organic(api: Harness) -> None:
    transaction_id = await api.click(pid=PID)
    response = await api.fire(transaction_id)
    assert response.status_code == 200
    assert response.json()["data"]["pid"] == "organic"
    assert (await api.view(transaction_id))["events"][0]["pid"] == "organic"


# 7. transaction

@pytest.mark.both_stores
async def test_unknown_transaction_is_invalid_for_this_campaign(api: Harness) -> None:
    response = await api.fire("txn_00000000-0000-4000-8000-000000000000")
    assert response.json() == error(400, "Invalid transaction_id for this campaign")


@pytest.mark.both_stores
async def test_transaction_of_another_campaign_is_invalid_for_this_campaign(
    api: Harness,
) -> None:
    other = await api.click(cid=OTHER_CID)
    response = await api.fire(other)
    assert response.status_code == 400
    assert response.json() == error(400, "Invalid transaction_id for this campaign")


# 8. revenue of conversions

@pytest.mark.both_stores
async def test_conversion_without_revenue_is_refused(api: Harness) -> None:
    transaction_id = await api.click()
    response = await api.fire(transaction_id, "sale_completed")
    assert response.json() == error(400, "revenue is required for conversion events")


@pytest.mark.both_stores
async def test_refused_conversion_does_not_open_the_window(api: Harness) -> None:
    transaction_id = await api.click()
    assert (await api.fire(transaction_id, "sale_completed")).status_code == 400
    assert (await api.fire(transaction_id, "sale_completed", revenue=10)).status_code == 200


@pytest.mark.both_stores
async def test_amount_stands_in_for_revenue(api: Harness) -> None:
    transaction_id = await api.click()
    response = await api.fire(transaction_id, "sale_completed", amount="19.99", pid=PID)
    assert response.status_code == 200
    event = (await api.view(transaction_id))["events"][0]
    assert (event["revenue"], event["payout"]) == ("19.99", "9.995")


@pytest.mark.both_stores
async def test_revenue_wins_over_amount(api: Harness) -> None:
    transaction_id = await api.click()
    await api.fire(transaction_id, "sale_completed", revenue="30", amount="19.99")
    assert (await api.view(transaction_id))["events"][0]["revenue"] == "30.00"


# 9 and 10. lock window and duplicates

@pytest.mark.both_stores
async def test_second_request_within_window_is_locked(api: Harness) -> None:
    transaction_id = await api.click()
    assert (await api.fire(transaction_id)).status_code == 200
    response = await api.fire(transaction_id)
    assert (response.status_code, response.json()) == (
        403, error(403, "Concurrent event in progress"))


@pytest.mark.both_stores
async def test_window_stays_open_for_lock_seconds_then_duplicate(api: Harness) -> None:
    transaction_id = await api.click()
    assert (await api.fire(transaction_id)).status_code == 200
    api.clock.advance(1.999)
    assert (await api.fire(transaction_id)).status_code == 403
    api.clock.advance(0.001)
    response = await api.fire(transaction_id)
    assert (response.status_code, response.json()) == (
        400, error(400, "Duplicate event for this transaction_id"))


@pytest.mark.both_stores
async def test_locked_answer_does_not_extend_the_window(api: Harness) -> None:
    transaction_id = await api.click()
    await api.fire(transaction_id)
    api.clock.advance(1.5)
    assert (await api.fire(transaction_id)).status_code == 403
    api.clock.advance(0.5)
    assert (await api.fire(transaction_id)).status_code == 400


@pytest.mark.both_stores
async def test_duplicate_reopens_the_window_so_retries_get_403_before_400(api: Harness) -> None:
    transaction_id = await api.click()
    await api.fire(transaction_id)
    api.clock.advance(2.0)
    assert (await api.fire(transaction_id)).status_code == 400
    assert (await api.fire(transaction_id)).status_code == 403
    api.clock.advance(2.0)
    assert (await api.fire(transaction_id)).status_code == 400


@pytest.mark.both_stores
async def test_window_is_per_transaction_and_event(api: Harness) -> None:
    first, second = await api.click(), await api.click()
    assert (await api.fire(first, "quote_viewed")).status_code == 200
    assert (await api.fire(first, "form_step")).status_code == 200
    assert (await api.fire(second, "quote_viewed")).status_code == 200


@pytest.mark.both_stores
async def test_allow_duplicates_fires_again_after_the_window(api: Harness) -> None:
    transaction_id = await api.click()
    assert (await api.fire(transaction_id, "form_step")).status_code == 200
    assert (await api.fire(transaction_id, "form_step")).status_code == 403
    api.clock.advance(2.0)
    assert (await api.fire(transaction_id, "form_step")).status_code == 200
    events = (await api.view(transaction_id))["events"]
    assert [event["event_id"] for event in events] == ["form_step", "form_step"]


@pytest.mark.both_stores
async def test_duplicate_conversion_is_refused_and_not_stored_twice(api: Harness) -> None:
    transaction_id = await api.click()
    first = await api.fire(transaction_id, "sale_completed", revenue=45)
    api.clock.advance(5)
    second = await api.fire(transaction_id, "sale_completed", revenue=45)
    assert (first.status_code, second.status_code) == (200, 400)
    assert len((await api.view(transaction_id))["events"]) == 1


# 11. fire

UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@pytest.mark.both_stores
async def test_non_conversion_answer_matches_the_seed(api: Harness) -> None:
    transaction_id = await api.click(pid=PID)
    response = await api.fire(transaction_id, pid=PID)
    assert response.json() == {
        "status": 200,
        "type": "success",
        "message": "Event triggered successfully",
        "data": {"cid": CID, "pid": PID, "transaction_id": transaction_id,
                 "conversion_id": "", "conversion": False},
    }


@pytest.mark.both_stores
async def test_conversion_answer_carries_a_new_conversion_id(api: Harness) -> None:
    transaction_id = await api.click(pid=PID)
    response = await api.fire(transaction_id, "sale_completed", pid=PID, revenue=45.00)
    data = response.json()["data"]
    assert response.status_code == 200
    assert data["conversion"] is True
    assert re.fullmatch(f"conv_{UUID4}", data["conversion_id"])
    assert data["transaction_id"] == transaction_id


@pytest.mark.both_stores
async def test_fired_event_is_stored_with_every_field(api: Harness) -> None:
    transaction_id = await api.click(pid=PID, sub1="s1")
    response = await api.fire(transaction_id, "sale_completed", pid=PID, revenue="45.00",
                              sub1="changed", sub2="new", first_name="Ada",
                              conversion_date="2026-11-27 16:30:00",
                              conversion_timezone="PST", tcpa_consent=1)
    assert response.status_code == 200
    view = await api.view(transaction_id)
    [event] = view["events"]
    assert event["event_id"] == "sale_completed"
    assert event["pid"] == PID
    assert event["conversion_id"] == response.json()["data"]["conversion_id"]
    assert event["revenue"] == "45.00"
    assert event["payout"] == "22.50"
    assert event["converted_at"] == "2026-11-28T00:30:00.000000Z"
    assert event["fired_at"] == "2026-11-28T12:00:00.000000Z"
    assert event["fields"]["first_name"] == "Ada"
    assert event["fields"]["conversion_timezone"] == "PST"
    # The event's lead fields update the lead.
    assert view["fields"] == {"sub1": "changed", "sub2": "new", "first_name": "Ada",
                              "tcpa_consent": 1}


@pytest.mark.both_stores
async def test_client_ip_and_user_agent_are_stored(api: Harness) -> None:
    transaction_id = await api.click()
    await api.fire(transaction_id)
    rows = await api.query("SELECT ip, user_agent FROM events WHERE transaction_id = ?",
                           transaction_id)
    assert rows == [("203.0.113.7", "pytest-agent/1.0")]


@pytest.mark.both_stores
async def test_fixed_payout_and_organic_no_payout(api: Harness) -> None:
    fixed = await api.click(pid="src_fixed")
    organic = await api.click()
    await api.fire(fixed, "sale_completed", pid="src_fixed", revenue="100")
    await api.fire(organic, "sale_completed", revenue="100")
    assert (await api.view(fixed))["events"][0]["payout"] == "12.50"
    assert (await api.view(organic))["events"][0]["payout"] is None


@pytest.mark.both_stores
async def test_money_is_stored_exactly(api: Harness) -> None:
    transaction_id = await api.click()
    await api.fire(transaction_id, "sale_completed", pid=PID, revenue=0.1)
    rows = await api.query("SELECT revenue, payout FROM events WHERE transaction_id = ?",
                           transaction_id)
    assert rows == [("0.10", "0.05")]


@pytest.mark.both_stores
async def test_json_number_keeps_its_exact_decimal_text(api: Harness) -> None:
    transaction_id = await api.click()
    body = ('{"cid": "%s", "event_id": "sale_completed", "transaction_id": "%s",'
            ' "pid": "%s", "revenue": 45.10}' % (CID, transaction_id, PID))
    response = await api.client.post("/api/event/trigger", content=body,
                                     headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    event = (await api.view(transaction_id))["events"][0]
    assert (event["revenue"], event["payout"]) == ("45.10", "22.55")


@pytest.mark.parametrize(("operations", "expected"), [
    ([("10.50", None)], "10.50"),
    ([("10.50", "add"), ("2.25", "add")], "12.75"),
    ([("10", "add"), ("2.5", "substract")], "7.50"),
    ([("10", "add"), ("2.5", "subtract")], "7.50"),
    ([("10", "add"), ("3", "override")], "3.00"),
])
@pytest.mark.both_stores
async def test_cost_operations_update_the_lead_cost(
    api: Harness, operations: list[tuple[str, str | None]], expected: str
) -> None:
    transaction_id = await api.click()
    for cost, operation in operations:
        fields = {"cost": cost} | ({"cost_operation": operation} if operation else {})
        assert (await api.fire(transaction_id, "form_step", **fields)).status_code == 200
        api.clock.advance(2)
    assert (await api.view(transaction_id))["cost"] == expected
