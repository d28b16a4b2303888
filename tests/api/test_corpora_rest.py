"""The Semantic Retriever over raw REST, as Google's curl samples call it: corpora, documents, chunks,
``:query`` with metadata filters, and permissions between projects."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import API_KEY, OTHER_KEY
from tests.server import RunningServer

OWNER = {"x-goog-api-key": API_KEY}
OTHER = {"x-goog-api-key": OTHER_KEY}
FACTS = [
    ("The Zorblax 9000 kettle boils water in exactly 47 seconds.", "kitchen", 2024),
    ("Lighthouse keepers log every passing ship in a green notebook.", "sea", 1890),
    ("Honey bees dance to tell each other where the flowers are.", "nature", 1950),
    ("The old library roof holds three bee hives since June.", "nature", 2021),
]


def condition(key: str, **test) -> dict:
    return {"key": key, "conditions": [test]}


class Api:
    def __init__(self, server: RunningServer, headers: dict[str, str]) -> None:
        self.base = f"{server.url}/v1beta"
        self.headers = headers

    def call(self, method: str, path: str, body: dict | None = None, **params) -> httpx.Response:
        return httpx.request(method, f"{self.base}/{path}", json=body, headers=self.headers, params=params, timeout=60)

    def ok(self, method: str, path: str, body: dict | None = None, **params) -> dict:
        reply = self.call(method, path, body, **params)
        assert reply.status_code == 200, reply.text
        return reply.json()


@pytest.fixture(scope="module")
def owner(real_server: RunningServer) -> Api:
    return Api(real_server, OWNER)


@pytest.fixture(scope="module")
def other(real_server: RunningServer) -> Api:
    return Api(real_server, OTHER)


@pytest.fixture(scope="module")
def corpus(owner: Api) -> tuple[str, str]:
    made = owner.ok("POST", "corpora", {"displayName": "Odd facts"})
    document = owner.ok(
        "POST",
        f"{made['name']}/documents",
        {"displayName": "facts", "customMetadata": [{"key": "source", "stringValue": "almanac"}]},
    )
    requests = [
        {
            "parent": document["name"],
            "chunk": {
                "data": {"stringValue": text},
                "customMetadata": [
                    {"key": "topic", "stringValue": topic},
                    {"key": "year", "numericValue": year},
                    {"key": "tags", "stringListValue": {"values": [topic, "fact"]}},
                ],
            },
        }
        for text, topic, year in FACTS
    ]
    created = owner.ok("POST", f"{document['name']}/chunks:batchCreate", {"requests": requests})
    assert [c["state"] for c in created["chunks"]] == ["STATE_ACTIVE"] * len(FACTS)
    return made["name"], document["name"]


def test_query_finds_the_chunk_and_filters_narrow_it(owner: Api, corpus) -> None:
    name, document = corpus
    found = owner.ok("POST", f"{name}:query", {"query": "How fast does the kettle boil water?", "resultsCount": 2})
    best = found["relevantChunks"][0]
    assert "47 seconds" in best["chunk"]["data"]["stringValue"] and best["document"]["name"] == document
    assert 0 < best["chunkRelevanceScore"] <= 1 and len(found["relevantChunks"]) == 2
    filtered = owner.ok(
        "POST",
        f"{name}:query",
        {
            "query": "bees",
            "metadataFilters": [
                {"key": "chunk.custom_metadata.year", "conditions": [{"numericValue": 2000, "operation": "GREATER"}]},
                {
                    "key": "document.custom_metadata.source",
                    "conditions": [{"stringValue": "almanac", "operation": "EQUAL"}],
                },
            ],
        },
    )
    texts = [c["chunk"]["data"]["stringValue"] for c in filtered["relevantChunks"]]
    assert texts and all("47 seconds" in t or "library" in t for t in texts) and len(texts) == 2
    includes = owner.ok(
        "POST",
        f"{document}:query",
        {
            "query": "bees",
            "metadataFilters": [
                {"key": "chunk.custom_metadata.tags", "conditions": [{"stringValue": "sea", "operation": "INCLUDES"}]}
            ],
        },
    )
    assert [c["chunk"]["data"]["stringValue"] for c in includes["relevantChunks"]] == [FACTS[1][0]]
    assert "document" not in includes["relevantChunks"][0]  # a document query names no document
    bad = owner.call("POST", f"{name}:query", {"query": "x", "metadataFilters": [{"key": "year", "conditions": []}]})
    assert bad.status_code == 400 and "conditions" in bad.json()["error"]["message"]


def test_chunks_update_list_and_batch_delete(owner: Api, corpus) -> None:
    name, _ = corpus
    document = owner.ok("POST", f"{name}/documents", {"name": f"{name}/documents/scratch"})
    assert document["name"] == f"{name}/documents/scratch"
    again = owner.call("POST", f"{name}/documents", {"name": f"{name}/documents/scratch"})
    assert again.status_code == 409
    chunk = owner.ok("POST", f"{document['name']}/chunks", {"data": {"stringValue": "Penguins cannot fly."}})
    updated = owner.ok("PATCH", chunk["name"], {"data": {"stringValue": "Penguins swim very fast."}}, updateMask="data")
    assert updated["data"]["stringValue"] == "Penguins swim very fast."
    found = owner.ok("POST", f"{document['name']}:query", {"query": "swimming penguins"})
    assert found["relevantChunks"][0]["chunk"]["data"]["stringValue"] == "Penguins swim very fast."
    more = owner.ok(
        "POST",
        f"{document['name']}/chunks:batchCreate",
        {"requests": [{"chunk": {"data": {"stringValue": f"Fact number {i}."}}} for i in range(12)]},
    )
    listed = owner.ok("GET", f"{document['name']}/chunks", pageSize=5)
    assert len(listed["chunks"]) == 5 and listed["nextPageToken"]
    batch = owner.ok(
        "POST",
        f"{document['name']}/chunks:batchUpdate",
        {
            "requests": [
                {
                    "chunk": {"name": c["name"], "customMetadata": [{"key": "n", "numericValue": 1}]},
                    "updateMask": "customMetadata",
                }
                for c in more["chunks"][:3]
            ]
        },
    )
    assert all(c["customMetadata"][0]["numericValue"] == 1 for c in batch["chunks"])
    refused = owner.call("DELETE", document["name"])
    assert refused.status_code == 400 and refused.json()["error"]["status"] == "FAILED_PRECONDITION"
    owner.ok(
        "POST", f"{document['name']}/chunks:batchDelete", {"requests": [{"name": c["name"]} for c in more["chunks"]]}
    )
    owner.ok("DELETE", chunk["name"])
    assert owner.call("GET", chunk["name"]).status_code == 404
    owner.ok("DELETE", document["name"])  # empty now
    too_many = owner.call(
        "POST",
        f"{name}/documents/facts-x/chunks:batchCreate",
        {"requests": [{"chunk": {"data": {"stringValue": "x"}}}] * 101},
    )
    assert too_many.status_code in (400, 404)


def test_permissions_matrix(owner: Api, other: Api, corpus) -> None:
    name, document = corpus
    query = {"query": "kettle"}
    write = {"data": {"stringValue": "Written by the other project."}}
    assert other.call("GET", name).status_code == 404  # no role: not even visible
    assert other.call("POST", f"{name}:query", query).status_code == 404
    grant = owner.ok(
        "POST", f"{name}/permissions", {"granteeType": "USER", "emailAddress": "other@localgem", "role": "READER"}
    )
    assert grant["role"] == "READER" and grant["name"].startswith(f"{name}/permissions/")
    assert owner.ok("GET", grant["name"]) == grant
    assert other.ok("GET", name)["name"] == name
    assert other.ok("POST", f"{name}:query", query)["relevantChunks"]
    assert name not in [c["name"] for c in other.ok("GET", "corpora").get("corpora", [])]  # lists only its own
    for method, path, body in (
        ("POST", f"{document}/chunks", write),
        ("PATCH", name, {"displayName": "renamed"}),
        ("DELETE", name, None),
        ("POST", f"{name}/permissions", {"granteeType": "EVERYONE", "role": "READER"}),
    ):
        reply = other.call(method, path, body)
        assert reply.status_code == 403, (method, path, reply.text)
    owner.ok("PATCH", grant["name"], {"role": "WRITER"}, updateMask="role")
    made = other.ok("POST", f"{document}/chunks", write)
    assert made["state"] == "STATE_ACTIVE"
    shared = other.ok("POST", f"{name}/permissions", {"granteeType": "GROUP", "emailAddress": "team", "role": "READER"})
    assert other.call("POST", f"{name}/permissions", {"emailAddress": "x", "role": "OWNER"}).status_code == 403
    assert other.call("PATCH", name, {"displayName": "renamed"}).status_code == 403
    assert other.call("PATCH", grant["name"], {"role": "OWNER"}, updateMask="role").status_code == 403
    other.ok("DELETE", made["name"])
    other.ok("DELETE", shared["name"])
    everyone = owner.ok("POST", f"{name}/permissions", {"granteeType": "EVERYONE", "role": "READER"})
    assert "emailAddress" not in everyone
    bad = owner.call("POST", f"{name}/permissions", {"granteeType": "EVERYONE", "role": "WRITER"})
    assert bad.status_code == 400
    listed = owner.ok("GET", f"{name}/permissions")["permissions"]
    assert {p["granteeType"] for p in listed} == {"USER", "EVERYONE"}
    owner.ok("DELETE", grant["name"])
    assert other.ok("GET", name)["name"] == name  # still a reader, as everyone is
    assert other.call("POST", f"{document}/chunks", write).status_code == 403
    owner.ok("DELETE", everyone["name"])
    assert other.call("GET", name).status_code == 404


def test_corpus_delete_needs_force_and_removes_everything(owner: Api) -> None:
    made = owner.ok("POST", "corpora", {"name": "corpora/throwaway-corpus", "displayName": "tmp"})
    document = owner.ok("POST", f"{made['name']}/documents", {"displayName": "d"})
    owner.ok("POST", f"{document['name']}/chunks", {"data": {"stringValue": "Zebras have stripes."}})
    assert owner.call("DELETE", made["name"]).status_code == 400
    renamed = owner.ok("PATCH", made["name"], {"displayName": "renamed"}, updateMask="displayName")
    assert renamed["displayName"] == "renamed"
    owner.ok("DELETE", made["name"], force="true")
    assert owner.call("GET", made["name"]).status_code == 404
    again = owner.ok("POST", "corpora", {"name": "corpora/throwaway-corpus"})
    document = owner.ok("POST", f"{again['name']}/documents", {"displayName": "d"})
    assert owner.ok("POST", f"{again['name']}:query", {"query": "zebras stripes"}).get("relevantChunks") is None
    owner.ok("DELETE", again["name"], force="true")
    assert owner.call("GET", f"{made['name']}/operations/nothing").status_code == 404


def test_a_documents_metadata_filters_its_chunks_once_patched(owner: Api) -> None:
    made = owner.ok("POST", "corpora", {"displayName": "patching"})
    document = owner.ok("POST", f"{made['name']}/documents", {"customMetadata": [{"key": "lang", "stringValue": "en"}]})
    owner.ok("POST", f"{document['name']}/chunks", {"data": {"stringValue": "Koalas sleep twenty hours a day."}})
    french = {"query": "koala sleep", "metadataFilters": [condition("lang", stringValue="fr", operation="EQUAL")]}
    assert owner.ok("POST", f"{made['name']}:query", french).get("relevantChunks") is None
    patched = owner.ok(
        "PATCH",
        document["name"],
        {"displayName": "koalas", "customMetadata": [{"key": "lang", "stringValue": "fr"}]},
        updateMask="displayName,customMetadata",
    )
    assert patched["displayName"] == "koalas" and patched["customMetadata"][0]["stringValue"] == "fr"
    (found,) = owner.ok("POST", f"{made['name']}:query", french)["relevantChunks"]
    assert found["document"]["displayName"] == "koalas"
    refused = owner.call("PATCH", document["name"], {"name": "x"}, updateMask="name")
    assert refused.status_code == 400
    owner.ok("DELETE", made["name"], force="true")
