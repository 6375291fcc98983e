"""Fuzz the order API from its own OpenAPI description: valid and invalid inputs alike get no 5xx and no
stack trace, and every refusal carries a `detail`."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from eventshop_tools.testing import Infra

POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# (A path parameter that is any string has no invalid form, so GET gets no negative cases.)
CASES = [("/orders", "POST", POSITIVE), ("/orders", "POST", NEGATIVE), ("/orders/{order_id}", "GET", POSITIVE)]


@pytest.fixture(scope="module")
def order_schema(infra: Infra):
    return schemathesis.openapi.from_url(f"{infra.order_url}/openapi.json")


@pytest.mark.parametrize(("path", "method", "mode"), CASES, ids=lambda v: getattr(v, "value", v))
def test_no_input_makes_the_order_api_fail(order_schema, path: str, method: str, mode) -> None:
    answers: list[int] = []

    @settings(max_examples=75, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(order_schema[path][method].as_strategy(generation_mode=mode))
    def call(case) -> None:
        response = case.call(timeout=30)
        answers.append(response.status_code)
        assert response.status_code < 500, (response.status_code, response.text[:500])
        assert "Traceback" not in response.text
        if response.status_code >= 400:
            assert "detail" in response.json()

    call()
    assert len(answers) >= 20, "hypothesis generated too few cases to mean anything"
