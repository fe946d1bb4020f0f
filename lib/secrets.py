"""Secrets from AWS Secrets Manager, read once at start-up.

When both ``ENVIRONMENT_TYPE`` and ``DNS_RECORD`` are set, each secret is the ``SecretString`` (never
``SecretBinary``) of the current version of ``${ENVIRONMENT_TYPE}/${DNS_RECORD}/<name>``, where ``<name>``
is the environment variable's name in lower case::

    production/ai.example.com/aiproxy_master_key  ->  AIPROXY_MASTER_KEY

A variable already present in the environment wins and is not fetched (a local override; an empty value
is an explicit "not used"). ``AIPROXY_SECRET_NAMES`` (comma-separated, lower or upper case) narrows the
set a deployment keeps in Secrets Manager; by default all of ``SECRET_ENV_NAMES``. The variables the models
file's ``providers:`` section names for its instances' secrets (``api_key_env``, ``azure_ad_token_env`` …) are
always wanted too, under the same naming (``VLLM_API_KEY`` → ``<env>/<dns>/vllm_api_key``): the file itself
says the deployment uses them. The task role must be allowed to read them.

What is required (checked by ``lib.settings`` once everything is loaded): the master key and ``REDIS_URL``
everywhere a deployment reads Secrets Manager (ECS injects ``REDIS_URL``; it is read from here only when the
environment lacks it); a provider's key only when a route of the deployment's models file uses that
provider; Honeybadger's key is optional (a warning). Here, a secret that is *not found*, or whose value is
empty, counts as unset. Any other failure to read a listed secret — AccessDenied, a KMS decryption error,
throttling, the network — means a wrongly scoped role or a broken network and stops start-up with
``SecretsError`` when ``strict`` (test and production alike), naming the secret ids, never a value; in
development it is logged and skipped.

Nothing is cached: each call reads the version that is current then, so a rotated secret is picked up
by the next start (new tasks after a deployment or a rotation-triggered restart).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

from lib.providers import REGISTRY

log = logging.getLogger("aiproxy.secrets")



def secret_env_names() -> tuple[str, ...]:
    """The master key, each registered provider type's key variable (``ProviderType.secret_env_names``) and
    Honeybadger's key: every secret a deployment may keep in Secrets Manager."""
    return ("AIPROXY_MASTER_KEY", *(name for kind in REGISTRY.values() for name in kind.secret_env_names),
            "HONEYBADGER_API_KEY")


#: ``secret_env_names()`` for the built-in provider types (what the task role may read).
SECRET_ENV_NAMES: tuple[str, ...] = secret_env_names()

# Start-up must not hang on an unreachable endpoint: a short connect timeout and a few standard retries.
_CONNECT_TIMEOUT_S = 3
_READ_TIMEOUT_S = 10
_MAX_ATTEMPTS = 3
_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SECRETSMANAGER", "AWS_ENDPOINT_URL")


class SecretsError(RuntimeError):
    """A secret the deployment needs could not be read; the message names secret ids, never values."""


def secret_id(environment_type: str, dns_record: str, env_name: str) -> str:
    """Return the Secrets Manager id for ``env_name``: ``{environment_type}/{dns_record}/{env_name.lower()}``."""
    return f"{environment_type}/{dns_record}/{env_name.lower()}"


def models_file_names(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The secret variables ``MODELS_FILE``'s ``providers:`` section names (none without a file; a file that
    does not parse names none here: settings reports it)."""
    path = (environ.get("MODELS_FILE") or "").strip()
    if not path:
        return ()
    from lib.providers.instances import key_env_names
    from lib.router import read_models_file

    try:
        return key_env_names(read_models_file(path).get("providers"))
    except ValueError:
        return ()


def wanted_names(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Return the env-var names to load: ``AIPROXY_SECRET_NAMES`` when set, else ``SECRET_ENV_NAMES``; and
    the names ``MODELS_FILE``'s provider instances give (``models_file_names``).

    Raises ``SecretsError`` when ``AIPROXY_SECRET_NAMES`` lists a name that is not a known secret.
    """
    from_file = models_file_names(environ)
    known_names = tuple(dict.fromkeys(secret_env_names() + from_file))
    raw = environ.get("AIPROXY_SECRET_NAMES", "").strip()
    if not raw:
        return known_names
    names = tuple(dict.fromkeys(part.strip().upper() for part in raw.split(",") if part.strip()))
    unknown = [name for name in names if name not in known_names]
    if unknown:
        known = ", ".join(name.lower() for name in known_names)
        raise SecretsError(f"AIPROXY_SECRET_NAMES lists unknown secret(s) {', '.join(unknown)}; known: {known}")
    return tuple(dict.fromkeys(names + from_file))


def make_client(environ: Mapping[str, str]) -> Any:
    """Return a boto3 Secrets Manager client for ``environ``.

    Region from ``AWS_REGION`` or ``AWS_DEFAULT_REGION``. Endpoint from ``AWS_ENDPOINT_URL_SECRETS_MANAGER``
    (boto3's own name for this service: the service id is "Secrets Manager"), ``AWS_ENDPOINT_URL_SECRETSMANAGER``
    (a common misspelling that boto3 ignores) or ``AWS_ENDPOINT_URL``, when ``environ`` has them. boto3 reads
    the first and the last from the process environment itself, but ``environ`` may carry values from
    ``config.txt`` that the process environment does not. Credentials come from boto3's usual chain (the
    ECS task role in AWS).
    """
    import boto3
    from botocore.config import Config

    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None
    endpoint = next((environ[name] for name in _ENDPOINT_VARS if environ.get(name)), None)
    config = Config(
        connect_timeout=_CONNECT_TIMEOUT_S,
        read_timeout=_READ_TIMEOUT_S,
        retries={"max_attempts": _MAX_ATTEMPTS, "mode": "standard"},
    )
    # A session of its own: boto3's default session would keep the first credentials it ever resolved.
    return boto3.session.Session().client("secretsmanager", region_name=region, endpoint_url=endpoint, config=config)


UNSET = ("not found", "empty SecretString")  # reasons that mean "this deployment does not use it"


def _fetch(client: Any, sid: str) -> tuple[str | None, str | None]:
    """Return ``(value, None)`` for a usable secret, else ``(None, reason)``; the reason never holds a value.

    A reason in ``UNSET`` means the secret is simply not there; any other reason is a failure to read it.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client.get_secret_value(SecretId=sid)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "ClientError")
        if code == "ResourceNotFoundException":
            return None, "not found"
        if code in ("403", "AccessDenied") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
            code = "AccessDeniedException"
        return None, code
    except BotoCoreError as exc:
        return None, type(exc).__name__
    value = response.get("SecretString")
    if value is None:
        return None, "has no SecretString (stored as SecretBinary)"
    # A trailing newline from `echo ... | aws secretsmanager put-secret-value` would break an auth header.
    value = value.strip()
    if not value:
        return None, "empty SecretString"
    return value, None


def load_secrets(
    environ: Mapping[str, str],
    *,
    client: Any = None,
    strict: bool,
    names: Iterable[str] | None = None,
) -> dict[str, str]:
    """Read this deployment's secrets from Secrets Manager.

    Returns env-var name -> value for each secret found, e.g. ``{"AIPROXY_MASTER_KEY": "..."}``; ``{}``
    when ``ENVIRONMENT_TYPE`` or ``DNS_RECORD`` is unset. Names already present in ``environ`` are not
    fetched; ``REDIS_URL`` is also fetched when the environment lacks it. ``client`` is a boto3
    ``secretsmanager`` client (built by ``make_client`` when ``None``); ``names`` defaults to
    ``wanted_names(environ)``. Secrets not found or empty are left out.

    Raises ``SecretsError`` when ``strict`` (test and production) and any wanted secret cannot be read
    (AccessDenied, KMS, throttling, network, a SecretBinary-only secret), naming every such secret id and the
    reason (never a value); without ``strict`` those are logged and skipped.
    """
    environment_type = environ.get("ENVIRONMENT_TYPE", "").strip()
    dns_record = environ.get("DNS_RECORD", "").strip()
    if not environment_type or not dns_record:
        return {}
    wanted = list(names if names is not None else wanted_names(environ))
    if names is None:
        wanted.append("REDIS_URL")
    todo = [name for name in dict.fromkeys(wanted) if name not in environ]
    if not todo:
        return {}
    if client is None:
        try:
            client = make_client(environ)
        except Exception as exc:  # NoRegionError and friends: botocore raises several unrelated types
            problem = f"cannot create a Secrets Manager client ({type(exc).__name__}: {exc})"
            if strict:
                raise SecretsError(problem) from exc
            log.warning("secrets: %s; skipping %d secret(s)", problem, len(todo))
            return {}
    found: dict[str, str] = {}
    failures: list[str] = []
    for name in todo:
        sid = secret_id(environment_type, dns_record, name)
        value, reason = _fetch(client, sid)
        if value is not None:
            found[name] = value
        elif reason in UNSET:
            log.info("secrets: %s (%s): treated as unset", sid, reason)
        else:
            failures.append(f"{sid} ({reason})")
    if failures:
        if strict:
            raise SecretsError(
                "cannot read secret(s) from AWS Secrets Manager: " + "; ".join(failures)
                + ". A read that fails (rather than a secret that does not exist) means the task role or the KMS"
                " key policy does not cover it, or Secrets Manager is unreachable: fix the role or the network,"
                " or narrow AIPROXY_SECRET_NAMES to the secrets this deployment keeps."
            )
        for failure in failures:
            log.warning("secrets: skipping %s", failure)
    log.info("secrets: loaded %s from Secrets Manager", ", ".join(sorted(found)) or "nothing")
    return found
