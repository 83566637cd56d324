"""GET /openapi.json: valid OpenAPI 3.1, every route described, fields from the Structs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from app.events.payloads import ClickFields, EventFields
from app.factory import create_app
from app.routes import openapi
from app.routes.events import EventData
from tests.conftest import make_config, running


async def spec_of(db_path: Path) -> dict[str, Any]:
    async with running(make_config(db_path)) as api:
        response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    found: dict[str, Any] = response.json()
    return found


async def test_the_document_validates_as_openapi_3_1(db_path: Path) -> None:
    spec = await spec_of(db_path)
    assert spec["openapi"] == "3.1.0"
    validate(spec)  # raises on the first violation
    assert spec == openapi.build()


@pytest.mark.parametrize("demo", [False, True])
def test_every_route_and_method_of_the_app_is_described(db_path: Path, demo: bool) -> None:
    app = create_app(make_config(db_path), demo=demo)
    spec = openapi.build(demo=demo)
    served = {
        (re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path), method.lower())
        for route in app.routes if isinstance(route, Route)
        for method in route.methods or () if method != "HEAD"
    }
    described = {(path, method) for path, methods in spec["paths"].items()
                 for method in methods}
    assert served == described


async def test_request_fields_and_their_limits_come_from_the_structs(db_path: Path) -> None:
    spec = await spec_of(db_path)
    schemas = spec["components"]["schemas"]
    for struct in (ClickFields, EventFields):
        properties = schemas[struct.__name__]["properties"]
        assert set(properties) == set(struct.__struct_fields__)
    event = schemas["EventFields"]
    assert event["properties"]["cid"] == {"type": "string", "maxLength": 255}
    assert set(event["required"]) == {"cid", "event_id", "transaction_id"}
    assert event["properties"]["tcpa_consent"]["anyOf"][0] == {"enum": [0, 1]}
    trigger = spec["paths"]["/api/event/trigger"]
    assert trigger["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EventFields"}
    query = {parameter["name"]: parameter for parameter in trigger["get"]["parameters"]}
    assert set(query) == set(EventFields.__struct_fields__)
    assert query["transaction_id"]["required"] is True
    assert query["sub1"]["required"] is False
    assert set(schemas["EventData"]["properties"]) == set(EventData.__struct_fields__)


async def test_answers_name_the_envelopes_the_retry_header_and_the_admin_scheme(
    db_path: Path,
) -> None:
    spec = await spec_of(db_path)
    error = spec["components"]["schemas"]["Error"]
    assert {"missingFields", "invalidFields"} <= set(error["properties"])
    assert spec["components"]["securitySchemes"]["adminToken"] == {
        "type": "http", "scheme": "bearer", "description": "[server] admin_token"}
    click = spec["paths"]["/api/click"]["post"]
    assert set(click["responses"]) == {"200", "400", "403", "408", "413", "503"}
    assert "Retry-After" in click["responses"]["503"]["headers"]
    envelope = click["responses"]["200"]["content"]["application/json"]["schema"]
    assert envelope["properties"]["data"] == {"$ref": "#/components/schemas/ClickData"}
    assert envelope["properties"]["type"] == {"const": "success"}
    postbacks = spec["paths"]["/api/postbacks"]["get"]
    assert postbacks["security"] == [{"adminToken": []}]
    assert "401" in postbacks["responses"]
    assert "security" not in click
