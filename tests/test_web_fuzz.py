"""Schemathesis against the OpenAPI document: generated requests for every operation — including
job bodies that name the installed plugins, models and data sets (the document's enums), so some
are accepted — and not one is answered with a server error. Bounded (a few examples per
operation, derandomized) to keep the suite short; `scripts/fuzz_api.py` runs thousands against a
real server process."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

from egide.web import create_app

LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}  # a caller on this machine: the server has no token

pytestmark = pytest.mark.slow  # a fuzzing run over the whole API: the slow tier


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, registry):
    # No job worker: accepted jobs are stored and queued, not run; a full queue answers 429.
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path_factory.mktemp("fuzz")), "EGIDE_REGISTRY": registry,
                      "EGIDE_WORKERS": 0, "EGIDE_QUEUE_SIZE": 64})
    yield schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    app.extensions["egide"].runner.shutdown()


def test_no_generated_request_is_a_server_error(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 14
    statuses: dict[str, set] = {}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case):
            response = case.call_and_validate(checks=[not_a_server_error], environ_base=LOOPBACK)
            statuses.setdefault(operation.label, set()).add(response.status_code)

        run()
    # Job bodies built from the enums get through validation: some jobs are accepted.
    print(statuses)
    assert 202 in statuses["POST /jobs"], statuses
