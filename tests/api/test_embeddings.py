"""``POST /v1/embeddings`` through the Flask client (sandbox vectors; the OpenAI path is in e2e)."""

from __future__ import annotations

import base64
import math
import struct

from tests.api.conftest import assert_error

URL = "/v1/embeddings"


def test_embeddings_shape_and_determinism(client, auth):
    resp = client.post(URL, json={"model": "sandbox-embedding", "input": ["hello", "world"]}, headers=auth)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    data = resp.get_json()
    assert data["object"] == "list" and [d["index"] for d in data["data"]] == [0, 1]
    vec = data["data"][0]["embedding"]
    assert len(vec) == 256 and abs(math.sqrt(sum(x * x for x in vec)) - 1) < 1e-6
    again = client.post(URL, json={"model": "sandbox-embedding", "input": "hello"}, headers=auth).get_json()
    assert again["data"][0]["embedding"] == vec
    assert data["usage"]["prompt_tokens"] == 2 and resp.headers["x-aiproxy-id"] == data["proxy_id"]


def test_embeddings_base64_and_dimensions(client, auth):
    data = client.post(URL, json={"model": "sandbox-embedding", "input": "x", "encoding_format": "base64",
                                  "dimensions": 8}, headers=auth).get_json()
    vec = struct.unpack("<8f", base64.b64decode(data["data"][0]["embedding"]))
    assert len(vec) == 8


def test_embeddings_bad_input(client, auth):
    assert_error(client.post(URL, json={"input": "x"}, headers=auth), 400, "missing_field")
    assert_error(client.post(URL, json={"model": "sandbox-embedding"}, headers=auth), 400, "missing_field")
    assert_error(client.post(URL, json={"model": "sandbox-embedding", "input": []}, headers=auth), 400, "invalid_value")
    assert_error(client.post(URL, json={"model": "sandbox-embedding", "input": "x", "user": None}, headers=auth),
                 400, "invalid_value")
    assert_error(client.post(URL, json={"model": "nope-model", "input": "x"}, headers=auth), 404, "model_not_found")
    assert_error(client.post(URL, json={"model": "sandbox-embedding", "input": "x"}), 401, "missing_api_key")
