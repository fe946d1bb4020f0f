"""Named provider instances in MODELS_FILE (``providers:``): how they are read, and every entry start-up refuses
with a message naming it (never a secret's value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib import secrets
from lib.router import Router
from lib.settings import Settings, SettingsError

SECRET = "sk-live-0123456789abcdefSECRET"


def models(tmp_path: Path, text: str, name: str = "models.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def settings(path: str, **env: str) -> Settings:
    return Settings.from_env({"MODELS_FILE": path, **env}, config_file=None)


def test_several_instances_of_one_type_with_their_own_keys_urls_and_headers(tmp_path: Path) -> None:
    path = models(tmp_path, """
providers:
  vllm-local: {type: openai, base_url: http://vllm:8000/v1, api_key_env: VLLM_API_KEY, headers: {X-Team: ml}}
  groq: {type: openai, base_url: "https://api.groq.com/openai/v1", api_key_env: GROQ_KEYS}
  azure-east: {type: azure, base_url: https://east.openai.azure.com, api_version: "2024-10-21",
               api_key_env: AZURE_EAST_API_KEY}
  bedrock: {type: bedrock, region: us-east-1}
  tiny: {type: local, path: /models/tiny, max_tokens: 64}
models:
  llama-3-8b: {provider: vllm-local, model: meta-llama/Meta-Llama-3-8B-Instruct}
  gpt-4o: {deployments: [{provider: azure-east, model: gpt-4o-prod, weight: 3}, {provider: openai, weight: 1}]}
""")
    s = settings(path, VLLM_API_KEY="k-vllm", GROQ_KEYS="g1, g2", OPENAI_API_KEYS="sk-env")
    vllm, groq, azure = s.providers["vllm-local"], s.providers["groq"], s.providers["azure-east"]
    assert (vllm.type, vllm.base_url, vllm.api_keys, vllm.headers) == ("openai", "http://vllm:8000/v1", ("k-vllm",),
                                                                       {"X-Team": "ml"})
    assert groq.api_keys == ("g1", "g2") and groq.key_env == ("GROQ_KEYS",)
    assert azure.type == "azure" and azure.extra["api_version"] == "2024-10-21" and azure.api_keys == ()
    assert s.providers["bedrock"].extra == {"region": "us-east-1"}
    assert s.providers["tiny"].extra == {"path": "/models/tiny", "max_tokens": 64}
    assert s.providers["openai"].api_keys == ("sk-env",)  # today's variables are the default instance
    assert "k-vllm" not in repr(s.providers) and "k-vllm" not in str(s.redacted())
    route = Router.load(path, providers={n: None for n in s.providers}).resolve("gpt-4o")
    assert [(d.provider, d.model, d.weight) for d in route.deployments] == [("azure-east", "gpt-4o-prod", 3.0),
                                                                          ("openai", "gpt-4o", 1.0)]


def test_an_entry_named_like_a_default_refines_it_and_keys_come_from_the_config_file(tmp_path: Path) -> None:
    path = models(tmp_path, "providers:\n  openai: {type: openai, base_url: http://mock:1/v1}\n"
                            "  house: {type: anthropic, api_key_env: HOUSE_KEY}\nmodels: {}\n")
    config = tmp_path / "config.txt"
    config.write_text(f"HOUSE_KEY={SECRET}\nOPENAI_API_KEYS=sk-a,sk-b\n")
    s = Settings.from_env({"MODELS_FILE": path}, config_file=str(config))
    assert s.providers["openai"].base_url == "http://mock:1/v1" and s.providers["openai"].api_keys == ("sk-a", "sk-b")
    assert s.providers["house"].api_keys == (SECRET,)


def test_bedrock_region_falls_back_to_aws_region(tmp_path: Path) -> None:
    path = models(tmp_path, "providers:\n  bedrock: {type: bedrock}\n  eu: {type: bedrock, region: eu-west-1}\n")
    s = settings(path, AWS_REGION="us-west-2")
    assert s.providers["bedrock"].extra["region"] == "us-west-2" and s.providers["eu"].extra["region"] == "eu-west-1"


BAD = [
    ("providers:\n  x: {type: openia}\n", "providers.x has unknown type 'openia'"),
    ("providers:\n  x: {base_url: http://a}\n", "providers.x needs a 'type'"),
    ("providers:\n  a: {type: openai}\n  a: {type: azure}\n", "'a' is defined twice"),
    ("providers:\n  Azure-East: {type: openai}\n  azure-east: {type: openai}\n", "providers.azure-east clashes"),
    ("providers:\n  openai: {type: anthropic}\n", "providers.openai has type 'anthropic' but is named like the "
                                                  "built-in type 'openai'"),
    ("providers:\n  bedrock: {type: azure, base_url: https://x}\n", "named like the built-in type 'bedrock'"),
    ("providers:\n  x: {type: openai, api_key_env: " + SECRET + "}\n", "providers.x: 'api_key_env' must name an "
                                                                       "environment variable"),
    ("providers:\n  x: {type: openai, base_ur: http://a}\n", "providers.x: unknown field 'base_ur'"),
    ("providers:\n  x: {type: openai, base_url: ftp://a}\n", "providers.x: 'base_url' must start with http"),
    ("providers:\n  x: {type: openai, headers: [a]}\n", "providers.x: 'headers' must map"),
    ("providers:\n  'bad name': {type: openai}\n", "providers.bad name: an instance name is"),
    ("providers: [openai]\n", "'providers' must map instance names"),
    ("models:\n  m: {provider: nowhere}\n", "entry 'm' names unknown provider 'nowhere'"),
    ("models:\n  m: {deployments: [{provider: openai}, {provider: ghost}]}\n", "entry 'm' deployment 2 names unknown "
                                                                              "provider 'ghost'"),
    ("models:\n  m: {deployments: [{provider: openai, weight: 0}]}\n", "deployment 1: 'weight' must be a number"),
    ("models:\n  m: {deployments: []}\n", "'deployments' must be a non-empty list"),
    ("models:\n  m: {provider: openai, deployments: [{provider: openai}]}\n", "needs a 'provider' or a list of "
                                                                             "'deployments' (one of them)"),
    ("models:\n  m: {deployments: [{provider: openai}, {provider: openai}]}\n", "repeats 'openai/m'"),
    ("models:\n  m: {provider: openai, fallbacks: [nothing-like-this]}\n", "does not exist"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m for _, m in BAD])
def test_start_up_refuses_a_bad_entry_naming_it(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings(models(tmp_path, text))
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)


def test_json_models_files_refuse_duplicates_too(tmp_path: Path) -> None:
    path = models(tmp_path, '{"providers": {"a": {"type": "openai"}, "a": {"type": "openai"}}}', "models.json")
    with pytest.raises(SettingsError, match="'a' is defined twice"):
        settings(path)


@pytest.mark.parametrize("entry,variable,secret", [
    ("{type: openai, base_url: 'https://api.openai.com/v1', api_key_env: TEAM_OPENAI_KEY}", "TEAM_OPENAI_KEY",
     "team_openai_key"),
    ("{type: azure, base_url: 'https://e.openai.azure.com', api_key_env: AZURE_EAST_API_KEY}", "AZURE_EAST_API_KEY",
     "azure_east_api_key"),
    ("{type: azure, base_url: 'https://e.openai.azure.com', azure_ad_token_env: AZURE_TOKEN}", "AZURE_TOKEN",
     "azure_token"),
    ("{type: anthropic, api_key_env: CLAUDE_KEY}", "CLAUDE_KEY", "claude_key"),
])
def test_a_deployment_needs_the_key_of_an_instance_a_route_uses(tmp_path: Path, redis_url: str, entry: str,
                                                                  variable: str, secret: str) -> None:
    prod = {"ENVIRONMENT": "production", "REDIS_URL": redis_url, "AIPROXY_MASTER_KEY": "Zq8-vN3rT6yB1wK9pL4sD7fH2jX5cM0a"}
    unused = models(tmp_path, f"providers:\n  house: {entry}\nmodels: {{}}\n", "unused.yaml")
    settings(unused, **prod)  # an instance no route uses may lack its key
    used = models(tmp_path, f"providers:\n  house: {entry}\nmodels:\n  m: {{deployments: [{{provider: house}}]}}\n")
    with pytest.raises(SettingsError) as caught:
        settings(used, **prod)
    assert f"routes 'm' to provider 'house', which has no key: set {variable}" in str(caught.value)
    s = settings(used, **prod, **{variable: "value-from-env"})
    assert s.providers["house"].api_keys == ("value-from-env",) or s.providers["house"].secrets
    assert secret == variable.lower()


@pytest.mark.parametrize("entry,message", [
    ("{type: local, path: /no/such/model}", "which has no model at /no/such/model"),
    ("{type: bedrock}", "which has no region (give the entry a region): set AWS_REGION"),
    ("{type: azure, api_key_env: K}", "which has no base_url"),
])
def test_other_needs_are_named_too(tmp_path: Path, redis_url: str, entry: str, message: str) -> None:
    path = models(tmp_path, f"providers:\n  house: {entry}\nmodels:\n  m: {{provider: house}}\n")
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings(path, ENVIRONMENT="production", REDIS_URL=redis_url, K="k",
                 AIPROXY_MASTER_KEY="Zq8-vN3rT6yB1wK9pL4sD7fH2jX5cM0a")


def test_secrets_manager_is_asked_for_the_keys_the_models_file_names(tmp_path: Path) -> None:
    path = models(tmp_path, "providers:\n  vllm: {type: openai, base_url: http://v:1/v1, api_key_env: VLLM_API_KEY}\n"
                            "  az: {type: azure, base_url: https://a, azure_ad_token_env: AZ_TOKEN}\n")
    wanted = secrets.wanted_names({"MODELS_FILE": path})
    assert wanted[-2:] == ("VLLM_API_KEY", "AZ_TOKEN") and "AIPROXY_MASTER_KEY" in wanted
    narrowed = secrets.wanted_names({"MODELS_FILE": path, "AIPROXY_SECRET_NAMES": "aiproxy_master_key,vllm_api_key"})
    assert narrowed == ("AIPROXY_MASTER_KEY", "VLLM_API_KEY", "AZ_TOKEN")
    assert "VLLM_API_KEY" not in secrets.SECRET_ENV_NAMES  # the built-in list (and the task role's) is unchanged


def test_keys_from_secrets_manager_reach_the_instances(tmp_path: Path, redis_url: str, monkeypatch) -> None:
    """The whole path with a stub Secrets Manager client: names from the file, values into the instances."""
    path = models(tmp_path, "providers:\n  vllm: {type: openai, base_url: http://v:1/v1, api_key_env: VLLM_API_KEY}\n"
                            "models:\n  m: {provider: vllm}\n")

    class Client:
        asked: list[str] = []

        def get_secret_value(self, SecretId: str) -> dict:  # noqa: N803 - boto3's name
            self.asked.append(SecretId)
            values = {"test/ai.example.com/aiproxy_master_key": "Zq8-vN3rT6yB1wK9pL4sD7fH2jX5cM0a",
                      "test/ai.example.com/vllm_api_key": SECRET}
            if SecretId in values:
                return {"SecretString": values[SecretId]}
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "GetSecretValue")

    client = Client()
    s = Settings.from_env({"MODELS_FILE": path, "ENVIRONMENT": "test", "ENVIRONMENT_TYPE": "test",
                           "DNS_RECORD": "ai.example.com", "REDIS_URL": redis_url}, config_file=None,
                          secrets_client=client)
    assert s.providers["vllm"].api_keys == (SECRET,)
    assert "test/ai.example.com/vllm_api_key" in client.asked
