"""Regenerate ``examples.json``: the examples of ``/openapi.json``, recorded from real answers of this gateway
(sandbox provider, a private Redis), so they are what a client really gets.

    .venv/bin/python -m src.apispec.make_examples

Not used at run time. ``tests/api/test_openapi_spec.py`` validates every example against its schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("examples.json")
MASTER = "example-master-key-0123456789-abcdefghij"

CHAT = {"model": "sandbox", "messages": [{"role": "system", "content": "You are concise."},
                                         {"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 64}


def _record() -> dict[str, Any]:
    from lib import store
    from lib.settings import Settings
    from src.app import create_app

    redis = store.start_embedded_redis()
    try:
        settings = Settings.from_env({"ENVIRONMENT": "test", "REDIS_URL": redis.url, "REDIS_PREFIX": "examples:",
                                      "AIPROXY_MASTER_KEY": MASTER, "SEMANTIC_CACHE": "false",
                                      "LOG_LEVEL": "WARNING"}, config_file=None)
        client = create_app(settings).test_client()
        admin = {"Authorization": f"Bearer {MASTER}"}
        ex: dict[str, Any] = {}
        ex["key_create"] = {"user_id": "alice", "name": "playground", "models": ["sandbox*", "gpt-4o*"], "rpm": 60,
                            "tpm": 20000, "budget_usd": "5.00", "budget_period": "monthly",
                            "expires_at": "2030-01-01T00:00:00Z", "cache": True, "cache_scope": "user"}
        created = client.post("/admin/keys", json=ex["key_create"], headers=admin).get_json()
        ex["plain_key"] = created["key"]
        auth = {"Authorization": f"Bearer {created['key']}"}

        def post(path: str, body: dict[str, Any], **headers: str) -> Any:
            resp = client.post(path, json=body, headers={**auth, **headers})
            assert resp.status_code == 200, resp.get_data(as_text=True)
            data = resp.get_json()
            resp.close()  # the log is written when the answer is closed
            return data

        ex["chat_request"] = CHAT
        ex["chat_response"] = post("/v1/chat/completions", CHAT)
        ex["chat_stream_request"] = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        streamed = client.post("/v1/chat/completions", json=ex["chat_stream_request"],
                               headers={**auth, "X-AIProxy-Cache": "off"})
        chunk = streamed.get_data(as_text=True)
        streamed.close()
        ex["chat_stream"] = "\n\n".join(chunk.strip().split("\n\n")[:2] + ["data: [DONE]"]) + "\n\n"
        ex["chat_json_request"] = {"model": "sandbox", "messages": [{"role": "user", "content": "A colour as JSON"}],
                                   "response_format": {"type": "json_object"}}
        ex["chat_text_request"] = {"model": "sandbox", "text": "Summarise: the gateway routes and caches."}
        ex["responses_request"] = {"model": "sandbox", "input": "Name a colour.", "instructions": "One word."}
        ex["responses_response"] = post("/v1/responses", ex["responses_request"])
        ex["messages_request"] = {"model": "sandbox", "max_tokens": 64,
                                  "messages": [{"role": "user", "content": "Hello!"}]}
        ex["messages_response"] = post("/v1/messages", ex["messages_request"])
        ex["embeddings_request"] = {"model": "sandbox-embedding", "input": ["first text", "second text"],
                                    "dimensions": 4}
        ex["embeddings_response"] = post("/v1/embeddings", ex["embeddings_request"])
        ex["webhook_request"] = {"prompt": "AI Proxy routes, limits, caches and logs LLM requests.",
                                 "type": "summary", "source": "docs"}
        ex["webhook_response"] = post("/api/v1/webhook", ex["webhook_request"])
        models = client.get("/v1/models", headers=auth).get_json()
        ex["models"] = {"object": "list", "data": [m for m in models["data"] if m["id"] in ("sandbox", "gpt-4o-mini")]}
        ex["log"] = client.get(f"/api/logs/{ex['chat_response']['proxy_id']}", headers=auth).get_json()
        listed = client.get("/api/logs?limit=1", headers=auth).get_json()
        ex["log_list"] = {**listed, "next_cursor": listed["next_cursor"], "has_more": listed["has_more"]}
        usage = client.get("/api/usage", headers=auth).get_json()
        day = max(d for d, v in usage["by_day"].items() if v["requests"])
        usage["start"] = usage["end"] = day
        usage["by_day"] = {day: usage["by_day"][day]}
        ex["usage"] = usage
        ex["key"] = client.get(f"/admin/keys/{created['id']}", headers=admin).get_json()
        ex["health"] = client.get("/health").get_json()
        ex["vendor_request"] = {"messages": [{"role": "user", "content": "Hello vendor"}], "max_tokens": 32}
        ex["vendors"] = {name: client.post(f"/{name}/messages", json=ex["vendor_request"]).get_json()
                         for name in ("vendor-o", "vendor-a", "vendor-b", "vendor-e")}
        return ex
    finally:
        redis.stop()


def main() -> None:
    OUT.write_text(json.dumps(_record(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{OUT}: written")


if __name__ == "__main__":
    main()
