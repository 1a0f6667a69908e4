"""openapi.json is generated from the functions' resolvers; a stale committed copy fails here."""

from __future__ import annotations

from local.openapi import OPENAPI_PATH, build_openapi, render


def test_openapi_json_is_up_to_date():
    assert OPENAPI_PATH.read_text() == render(build_openapi()), "run: make openapi"


def test_every_route_documents_its_errors_as_problem_json():
    schema = build_openapi()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            errors = {
                status: response for status, response in operation["responses"].items() if status >= "400"
            }
            assert {"422", "503"} <= set(errors), (method, path)
            for response in errors.values():
                assert "application/problem+json" in response["content"], (method, path)
