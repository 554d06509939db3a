"""The OpenAPI document describes exactly the routes the app serves."""

from __future__ import annotations

from agentproxy.api.openapi import openapi_document

from .support import documented_operations, served_operations


def test_every_route_is_documented_and_every_documented_route_exists(settings):
    assert served_operations(settings) == documented_operations(openapi_document())


def test_operations_are_unique_and_references_resolve():
    document = openapi_document()
    ids = [op["operationId"] for item in document["paths"].values() for key, op in item.items()
           if key != "parameters"]
    assert len(ids) == len(set(ids))
    schemas = document["components"]["schemas"]

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(document):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref


def test_security_is_declared_only_when_keys_are_required():
    assert openapi_document(auth=True)["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "security" not in openapi_document(auth=False)
    assert openapi_document()["paths"]["/healthz"]["get"]["security"] == []


async def test_the_document_is_served(api):
    response = await api.get("/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.") and "/sessions/{session}/agents" in document["paths"]
