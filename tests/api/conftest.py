"""Flask-client fixtures (the flaskr tutorial's app/client/auth pattern), on a real Redis."""

from __future__ import annotations

from typing import Any

import pytest

from lib.settings import Settings
from src.app import create_app

MASTER = "test-master-key-0123456789-abcdefghij"


@pytest.fixture
def make_settings(redis_url, key_prefix):
    def make(**env: str) -> Settings:
        base = {
            "ENVIRONMENT": "test",
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": key_prefix,
            "AIPROXY_MASTER_KEY": MASTER,
            "LOG_LEVEL": "WARNING",
            "SEMANTIC_CACHE": "false",  # the semantic tests turn it on; loading the model is not free
        }
        base.update(env)
        return Settings.from_env(base, config_file=None)

    return make


@pytest.fixture
def app(make_settings):
    return create_app(make_settings())


@pytest.fixture
def client(app):
    return app.test_client()


class Admin:
    """Issues keys through the real admin API."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {MASTER}"}

    def create_key(self, **body: Any) -> dict[str, Any]:
        body.setdefault("user_id", "user-1")
        resp = self.client.post("/admin/keys", json=body, headers=self.headers)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        return resp.get_json()


@pytest.fixture
def admin(client) -> Admin:
    return Admin(client)


@pytest.fixture
def api_key(admin) -> str:
    return admin.create_key()["key"]


@pytest.fixture
def auth(api_key) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def chat_body(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "sandbox", "messages": [{"role": "user", "content": "Hello there"}]}
    body.update(kw)
    return body


def assert_error(resp, status: int, code: str, type_: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    data = resp.get_json()
    assert set(data) == {"error"}
    err = data["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code, err
    if type_:
        assert err["type"] == type_
    assert "Traceback" not in err["message"]
    return err
