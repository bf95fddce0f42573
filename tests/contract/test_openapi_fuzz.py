"""Fuzz every operation of the OpenAPI document (schemathesis) against the real server:
no input may cause a server error, and every answer matches the document."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from dxflow._core import EngineCore
from dxflow._operations import OPERATIONS
from dxflow_server._openapi import openapi_document

# Streams never end on their own (stats.watch without count): fuzzed via the contract tests.
# tus routes speak in headers the document cannot describe: tests/contract/test_uploads.py.
STREAMS = [op.name for op in OPERATIONS.values() if op.kind != "call" or op.custom_route]
schema = schemathesis.openapi.from_dict(openapi_document()).exclude(operation_id=STREAMS)


@pytest.fixture
def master_token(core: EngineCore) -> str:
    record = core.keys.get("master")
    assert record is not None
    return core.auth.issue(record, 3600).token


# Key material and compose documents are checked beyond what JSON Schema can say (a
# string that parses as a public key, a valid Compose project), so schema-valid bodies
# may rightly get 422 there. Storage paths too: the confinement rules (no '..', no name
# over 255 bytes, no symlink escape) are beyond JSON Schema. So are a proxy's targets,
# CIDRs and rate, and which fields go together (targets or a workflow service).
SEMANTIC = {"keys.register", "keys.rotate", "workflows.create"} | {
    name for name in OPERATIONS if name.startswith(("objects.", "shares.", "shells.", "proxies."))
}


# The suite fuzzes the same inputs on every run, so a red run points at a change, not at a
# lucky draw; DXFLOW_FUZZ_EXAMPLES=500 (say) explores fresh inputs for a deeper hunt.
DEEP = int(os.environ.get("DXFLOW_FUZZ_EXAMPLES", "0"))


# Query strings carry no JSON types, so which query is "schema-violating" is ambiguous
# (a null and "" look alike; so do 5 and "5"); invalid bodies are still fuzzed for 500s.


# 30 real requests per operation, some of which start a process (shells.create) or ask
# Docker (compose projects): seconds alone, over a minute on a loaded machine.
@pytest.mark.timeout(300)
@schema.parametrize()
@settings(
    max_examples=DEEP or 30,
    derandomize=not DEEP,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_breaks_the_engine(
    case: schemathesis.Case, server_url: str, master_token: str
) -> None:
    semantic = case.operation.definition.raw.get("operationId") in SEMANTIC
    case.call_and_validate(
        base_url=server_url,
        headers={"Authorization": f"Bearer {master_token}"},
        excluded_checks=[
            negative_data_rejection,
            *([positive_data_acceptance] if semantic else []),
        ],
    )
