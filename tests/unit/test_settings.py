"""``lib.settings``: one declaration per setting, environment-dependent defaults, clear errors, a complete sample."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lib.providers import REGISTRY
from lib.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def test_env_names_come_from_field_names_and_empty_means_unset() -> None:
    s = Settings.from_env({"REQUEST_TIMEOUT": "12.5", "RATE_LIMIT": "7", "BANNED_WORDS": "a, re:b+ ,",
                           "KEEPALIVE": "", "AIPROXY_MASTER_KEY": " m "}, config_file=None)
    assert s.request_timeout == 12.5 and s.rate_limit == 7 and s.banned_words == ("a", "re:b+")
    assert s.keepalive == Settings.model_fields["keepalive"].default and s.master_key == "m"


@pytest.mark.parametrize("environment, closed, sandbox, metrics, proxies", [
    ("development", False, True, True, 0), ("test", False, True, True, 0), ("production", True, False, False, 1)])
def test_defaults_that_depend_on_the_environment(environment, closed, sandbox, metrics, proxies) -> None:
    env = {"ENVIRONMENT": environment, "REDIS_URL": "redis://r", "AIPROXY_MASTER_KEY": "Zq8-vN3rT6yB1wK9pL4sD7fH2jX5cM0a"}
    s = Settings.from_env(env, config_file=None)
    assert (s.redis_failure_mode == "fail-closed", s.sandbox_fallback, s.metrics_public, s.trust_proxy_headers) == (
        closed, sandbox, metrics, proxies)
    overridden = Settings.from_env({**env, "REDIS_FAILURE_MODE": "open", "SANDBOX_FALLBACK": "false"}, config_file=None)
    assert overridden.redis_failure_mode == "fail-open" and overridden.sandbox_fallback is False


def test_bad_values_name_the_variable_never_the_value() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"PORT": "eighty", "AIPROXY_MASTER_KEY": "s3cret-value"}, config_file=None)
    assert "PORT" in str(info.value) and "s3cret-value" not in str(info.value)
    with pytest.raises(SettingsError, match="REDIS_FAILURE_MODE"):
        Settings.from_env({"REDIS_FAILURE_MODE": "sometimes"}, config_file=None)


def test_config_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    file = tmp_path / "config.txt"
    file.write_text("RATE_LIMIT=5\nLOG_LEVEL=debug\n")
    s = Settings.from_env({"RATE_LIMIT": "9"}, config_file=str(file))
    assert s.rate_limit == 9 and s.log_level == "DEBUG"


def test_the_sample_documents_every_setting() -> None:
    sample = (ROOT / "config.txt.sample").read_text()
    documented = set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", sample, re.MULTILINE))
    names = {(field.alias or name.upper()) for name, field in Settings.model_fields.items() if name != "providers"}
    names |= {name for kind in REGISTRY.values() for name in (*kind.key_env[:1], kind.base_url_env) if name}
    missing = sorted(names - documented)
    assert not missing, f"config.txt.sample does not document {missing}"
