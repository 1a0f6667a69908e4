"""Build ``openapi.json``: the functions' Powertools resolvers, merged (no hand-written spec).

``python -m local.openapi`` writes the file; ``tests/test_openapi.py`` fails when the committed
file is out of date. Two things Powertools cannot say by itself are added here, from
the code and the template rather than by hand: every 422 is our problem+json (Powertools
documents its own validation body), and each route's security comes from its authorizer in
template.yaml (the activation-token routes check the token in the function).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OPENAPI_PATH = ROOT / "openapi.json"
TITLE = "AI Credits API"
VERSION = "1.0.0"
DESCRIPTION = (
    "Meters the AI credits sold with licenses of the feed-aggregator WordPress plugin. "
    "Every error is application/problem+json with a stable `code`. Contract: shared/API.md."
)
# Routes whose caller authenticates in the function, not at the gateway.
_TOKEN_ROUTES = {
    ("get", "/v1/balance"),
    ("get", "/v1/usage"),
    ("post", "/v1/consume"),
    ("delete", "/v1/activations/current"),
    ("post", "/v1/holds"),
    ("post", "/v1/holds/{hold_id}/capture"),
    ("delete", "/v1/holds/{hold_id}"),
    ("get", "/v1/holds/{hold_id}"),
}


def _security_schemes() -> dict[str, Any]:
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    return {
        "activationToken": HTTPBearer(description="The activation token POST /v1/activations returned."),
        "portalJwt": HTTPBearer(
            bearerFormat="JWT", description="The account portal's JWT; the account is `sub`."
        ),
        "admin": HTTPBearer(description="Billing. In AWS: IAM (SigV4). Locally: Bearer LOCAL_ADMIN_TOKEN."),
    }


def _route_security(template_path: Path) -> dict[tuple[str, str], str | None]:
    from local import cfn

    security: dict[tuple[str, str], str | None] = {}
    for function in cfn.functions(cfn.load_template(template_path), "table"):
        for route in function.routes:
            key = (route.method.lower(), route.path)
            security[key] = {"jwt": "portalJwt", "iam": "admin"}.get(route.auth) or (
                "activationToken" if key in _TOKEN_ROUTES else None
            )
    return security


def build_openapi() -> dict[str, Any]:
    shared = str(ROOT / "shared")
    if shared not in sys.path:
        sys.path.insert(0, shared)
    from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
    from aws_lambda_powertools.event_handler.openapi.models import Server

    merge = OpenAPIMerge(
        title=TITLE,
        version=VERSION,
        description=DESCRIPTION,
        servers=[Server(url="http://127.0.0.1:3000", description="make run")],
        security_schemes=_security_schemes(),
        on_conflict="error",
    )
    from local import cfn

    # The functions the template routes to (Powertools' discover() looks for a resolver built
    # in the file itself; ours come from ai_credits.api.create_app()).
    for function in cfn.functions(cfn.load_template(ROOT / "template.yaml"), "table"):
        if function.routes:
            merge.add_file(ROOT / function.code_uri / "app.py", resolver_name="app")
    schema = json.loads(merge.get_openapi_json_schema())

    problem_422 = {
        "description": "validation_error",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    security = _route_security(ROOT / "template.yaml")
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            operation["responses"]["422"] = problem_422
            for bodiless in ("204", "304"):  # Powertools documents the return annotation's body
                operation["responses"].get(bodiless, {}).pop("content", None)
            if (method, path) == ("get", "/v1/balance"):
                etag = {"description": "strong ETag of the body", "schema": {"type": "string"}}
                for status in ("200", "304"):
                    operation["responses"][status]["headers"] = {"ETag": etag}
            scheme = security[(method, path)]
            operation["security"] = [{scheme: []}] if scheme else []
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(unused, None)
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    OPENAPI_PATH.write_text(render(build_openapi()))
    print(f"wrote {OPENAPI_PATH.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
