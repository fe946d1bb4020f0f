"""The sandbox vendors /vendor-a and /vendor-b answer with a local model when VENDOR_A_MODEL_PATH /
VENDOR_B_MODEL_PATH are set (in process here; under gunicorn, the machine's model server)."""

from __future__ import annotations

from src.app import create_app
from tests.fakes import tiny_lm


def test_sandbox_vendors_answer_with_a_local_model(make_settings, tmp_path) -> None:
    path = tiny_lm.build(tmp_path / "vendor-model")
    client = create_app(make_settings(VENDOR_A_MODEL_PATH=path)).test_client()
    resp = client.post("/vendor-a/messages", json={"messages": [{"role": "user", "content": "hello"}]})
    body = resp.get_json()
    assert resp.status_code == 200 and body["content"][0]["text"] == " ".join(tiny_lm.CHAIN)
    assert body["usage"]["output_tokens"] == len(tiny_lm.CHAIN) and body["stop_reason"] == "end_turn"
    cut = client.post("/vendor-a/messages", json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 2})
    assert cut.get_json()["content"][0]["text"] == "alpha bravo" and cut.get_json()["stop_reason"] == "max_tokens"
    other = client.post("/vendor-b/messages", json={"prompt": "hello"}).get_json()
    assert other["output"]["text"].startswith("Sandbox reply from vendor-b")  # no model: generated text
