"""A property-based fuzz run of the HTTP API's own OpenAPI document (schemathesis): requests that match
the schema and requests that break it, on every operation, with and without a bearer token, against a
real Redis. No answer may be a 5xx, every answer must match the documented status codes, content type
and schema, invalid requests must be refused, and the documented examples must work.

Bounded: a fixed number of examples per operation and a seed, so a CI run takes seconds and fails the
same way twice."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from starlette.exceptions import StarletteDeprecationWarning

from taskq_cli import TaskQueue

with warnings.catch_warnings():  # starlette asks for httpx2; httpx (the api extra) works the same
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    import starlette.testclient  # noqa: F401

from taskq_cli.api import HostRule, create_app

TOKEN = "fuzz-token-0123456789"
EXAMPLES = 20  # per operation and phase (the coverage phase adds its boundary cases on top)

CONFIG = f"""
seed = 20261128
suppress-health-check = ["too_slow", "filter_too_much", "data_too_large"]

[generation]
mode = "all"
max-examples = {EXAMPLES}
database = "none"

[phases.stateful]
enabled = false

# A request the schema allows may still be refused for a reason a schema cannot say (a date before
# 1970, both `ids` and `all`): with a 422 and a message, never a 5xx. 408: a task's result that is
# not ready within `wait` (GET /tasks/{id}/result).
[checks.positive_data_acceptance]
expected-statuses = ["2xx", 401, 404, 408, 409, 422]

[checks.negative_data_rejection]
expected-statuses = [400, 401, 404, 405, 409, 413, 415, 422]
"""


def _config(token: str | None) -> SchemathesisConfig:
    text = CONFIG
    if token is not None:
        text = f'headers = {{ Authorization = "Bearer {token}" }}\n' + text
    return SchemathesisConfig.from_str(text)


@pytest.fixture
def queue(redis_url: str, namespace: str) -> Iterator[TaskQueue]:
    tq = TaskQueue(redis_url=redis_url, namespace=namespace)
    yield tq
    tq.close()


@pytest.fixture
def open_schema(queue: TaskQueue) -> schemathesis.BaseSchema:
    app = create_app(queue, token="", hosts=HostRule(frozenset({"testserver"})))  # the test client's name
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=_config(None))


@pytest.fixture
def token_schema(queue: TaskQueue) -> schemathesis.BaseSchema:
    app = create_app(queue, token=TOKEN)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=_config(TOKEN), headers=headers)


open_api = schemathesis.pytest.from_fixture("open_schema")
token_api = schemathesis.pytest.from_fixture("token_schema")


@open_api.parametrize()
def test_the_api_without_a_token_answers_every_generated_request_as_documented(
    case: schemathesis.Case,
) -> None:
    case.call_and_validate()


@token_api.parametrize()
def test_the_api_with_a_token_answers_every_generated_request_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate()
