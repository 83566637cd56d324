"""schemathesis against a served process: every answer is one the document describes.

Requests are generated from /openapi.json for every operation, sent with the admin token
to a real ``event-postback serve``; each answer must not be a 5xx, must have a documented
status code, content type and headers, and a body valid against its schema. Examples are
bounded and derandomized so a failure reproduces and the run stays within seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN_TOKEN, TEST_CONFIG, error, make_config, running
from tests.served import Served

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
EXAMPLES = 30


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp_path = tmp_path_factory.mktemp("conformance")
    config = tmp_path / "config.toml"
    config.write_text(TEST_CONFIG.replace(
        "[server]\n", f'[server]\ndb = "{tmp_path / "conformance.db"}"\n', 1))
    server = Served(tmp_path, "--config", str(config))
    yield server
    server.kill()


def _operations() -> list[str]:
    from app.routes import openapi

    return [f"{method.upper()} {path}" for path, methods in openapi.build()["paths"].items()
            for method in methods]


@pytest.mark.parametrize("label", _operations())
def test_answers_conform_to_the_document(served: Served, label: str) -> None:
    spec: dict[str, Any] = httpx.get(f"{served.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    method, path = label.split(" ", 1)
    operation = schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call(base_url=served.url, headers=AUTH, timeout=10)
        case.validate_response(response, checks=CHECKS)

    run()


async def test_a_postback_id_beyond_sqlite_integers_is_not_found(db_path: Path) -> None:
    async with running(make_config(db_path)) as api:
        for path in ("/api/postbacks/%d" % 2**64, "/api/postbacks/%d/retry" % 2**64):
            method = api.client.post if path.endswith("retry") else api.client.get
            response = await method(path, headers=AUTH)
            assert response.status_code == 404, response.text
            assert response.json() == error(404, "Postback not found")
