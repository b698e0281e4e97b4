"""schemathesis against an app's own OpenAPI document, shared by the service and review tests."""

from fastapi.testclient import TestClient

# Operations whose body schema cannot state every rule, so a schema-valid body may rightly get a
# 400: a V2 tensor's data must fill its shape and name the model's columns, which JSON Schema
# cannot express (the protocol answers such a request 400 with {"error": ...}). Every other check
# still runs on them; only "schema-valid data is accepted" (positive_data_acceptance) does not.
SEMANTIC_400 = {("POST", "/v2/models/{name}/infer")}


def schemathesis_failures(app, headers: dict, examples: int, semantic=()) -> list[str]:
    """Every schemathesis check but response time, positive and negative cases, on every
    operation of `app`'s OpenAPI document; the failures as text (empty: the contract holds).
    `semantic`: more (method, path) operations like those of SEMANTIC_400, where a schema-valid
    body may rightly be refused."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    spec = TestClient(app).get("/openapi.json", headers=headers).json()
    schema = schemathesis.openapi.from_dict(spec)
    # The key or token is `headers`' (valid); schemathesis must not drop or mangle it, or a
    # case it calls invalid (no Authorization) is sent with ours and rightly answered 200.
    # Requests without a valid key are the apps' own tests (401 on every route).
    schema.config.generation.update(with_security_parameters=False)
    schema.app = app
    checks = [c for c in CHECKS.get_all() if c.__name__ != "max_response_time"]
    failures = []
    client = TestClient(app)
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    for operation, mode in ((op.ok(), mode) for op in schema.get_all_operations() for mode in modes):

        these = [c for c in checks if c.__name__ != "positive_data_acceptance"] \
            if (operation.method.upper(), operation.path) in SEMANTIC_400 | set(semantic) else checks

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def run(case):
            response = client.request(**case.as_transport_kwargs(base_url="http://testserver",
                                                                 headers=headers))
            case.validate_response(response, checks=these, headers=headers)  # noqa: B023 (run at once)

        try:
            run()
        except Unsatisfiable:  # no invalid request exists for a route without parameters
            assert mode is schemathesis.GenerationMode.NEGATIVE and operation.method == "get"
        except Exception as exc:  # collect all operations' failures, then report them together
            failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    return failures
