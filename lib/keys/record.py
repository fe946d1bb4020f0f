"""A gateway key as stored: its id and hash, the admin API's request models and the record with its one
serialisation (``_CODECS``: Redis hash <-> dataclass <-> the admin view)."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

KEY_PREFIX = "sk-aip-"
ID_LEN = 16


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def is_master(presented: str | None, master_key: str | None) -> bool:
    """Constant-time comparison of a presented key with the master key."""
    if not presented or not master_key:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), master_key.encode("utf-8"))


def parse_key_id(key: str) -> str | None:
    """The id inside a well-formed gateway key, or None when it is not one of ours."""
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + ID_LEN + 2:
        return None
    kid = key[len(KEY_PREFIX):len(KEY_PREFIX) + ID_LEN]
    if key[len(KEY_PREFIX) + ID_LEN] != "-" or any(c not in "0123456789abcdef" for c in kid):
        return None
    return kid


def _epoch(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class _KeyFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    models: list[str] | None = None
    rpm: int | None = Field(None, ge=0)
    tpm: int | None = Field(None, ge=0)
    budget_usd: Decimal | None = Field(None, ge=0, max_digits=18, decimal_places=6)
    budget_period: Literal["total", "daily", "monthly"] | None = None
    expires_at: datetime | float | None = None
    cache: bool | None = None
    cache_scope: str | None = Field(None, pattern=r"^(user|key|shared:[A-Za-z0-9_.-]{1,64})$")
    cache_strictness: Literal["strict", "balanced"] | None = None
    metadata: dict[str, str] | None = None

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and any(not isinstance(m, str) or not m.strip() for m in v):
            raise ValueError("models must be a list of model names (wildcards like 'gpt-4o*' allowed)")
        return v


class KeyCreate(_KeyFields):
    """Body of ``POST /admin/keys``."""

    user_id: str = Field(min_length=1, max_length=256)


class KeyPatch(_KeyFields):
    """Body of ``PATCH /admin/keys/<id>``; only the fields given change (``null`` clears a limit)."""

    active: bool | None = None
    user_id: str | None = Field(None, min_length=1, max_length=256)


# One serialisation of the key record: each field's codec to and from its Redis hash string. ``public()``
# (the admin API's view) is the same fields minus the hash, with times as ISO 8601 and money as a string.
def _opt_str(v: Any) -> str:
    return "" if v is None else str(v)


def _opt(conv: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda raw: conv(raw) if raw else None


def _json_or_none(raw: str) -> Any:
    return json.loads(raw) if raw else None


_CODECS: dict[str, tuple[Callable[[Any], str], Callable[[str], Any]]] = {
    "id": (str, str),
    "key_hash": (str, str),
    "user_id": (str, str),
    "name": (_opt_str, lambda raw: raw or None),
    "active": (lambda v: "1" if v else "0", lambda raw: raw == "1"),
    "revoked_at": (_opt_str, _opt(float)),
    "models": (lambda v: "" if v is None else json.dumps(v), _json_or_none),
    "rpm": (_opt_str, _opt(int)),
    "tpm": (_opt_str, _opt(int)),
    "budget_usd": (_opt_str, _opt(Decimal)),
    "budget_period": (str, lambda raw: raw or "total"),
    "expires_at": (_opt_str, _opt(float)),
    "created_at": (str, lambda raw: float(raw or 0)),
    "cache": (lambda v: "1" if v else "0", lambda raw: raw != "0"),
    "cache_scope": (str, lambda raw: raw or "user"),
    "cache_strictness": (str, lambda raw: raw or "strict"),
    "metadata": (json.dumps, lambda raw: json.loads(raw or "{}")),
    "key_hint": (str, str),
    "gen": (str, lambda raw: int(raw or 0)),
}
_PUBLIC_FORMAT: dict[str, Callable[[Any], Any]] = {
    "revoked_at": lambda v: _iso(v),
    "expires_at": lambda v: _iso(v),
    "created_at": lambda v: _iso(v),
    "budget_usd": lambda v: None if v is None else str(v),
}


@dataclass
class KeyRecord:
    """One gateway key as stored (never the plain key). Serialised by ``_CODECS`` only."""

    id: str
    key_hash: str
    user_id: str
    name: str | None = None
    active: bool = True
    revoked_at: float | None = None
    models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: Decimal | None = None
    budget_period: str = "total"
    expires_at: float | None = None
    created_at: float = 0.0
    cache: bool = True
    cache_scope: str = "user"
    cache_strictness: str = "strict"  # semantic cache: "strict" (fewest wrong answers) or "balanced" (more hits)
    metadata: dict[str, str] = field(default_factory=dict)
    key_hint: str = ""
    gen: int = 1  # bumped by every change, so a worker holding an older copy notices on its next round trip

    def allows_model(self, name: str) -> bool:
        """True when the key may use model ``name`` (no list = every model; wildcards allowed)."""
        if not self.models:
            return True
        return any(m == name or fnmatch.fnmatchcase(name, m) for m in self.models)

    def public(self) -> dict[str, Any]:
        """The key as the admin API shows it (no hash, no plain key)."""
        out: dict[str, Any] = {"id": self.id, "object": "api_key"}
        for name in _CODECS:
            if name in ("id", "key_hash", "gen"):
                continue
            value = getattr(self, name)
            out[name] = _PUBLIC_FORMAT[name](value) if name in _PUBLIC_FORMAT else value
            if name == "revoked_at":
                out["revoked"] = value is not None
        return out

    def to_redis(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """The record (or only the fields ``names``) as the strings of its Redis hash."""
        return {name: _CODECS[name][0](getattr(self, name)) for name in (names or _CODECS)}

    @classmethod
    def from_redis(cls, raw: dict[bytes, bytes]) -> "KeyRecord":
        """The record from its Redis hash (fields it lacks take their defaults)."""
        d = {k.decode(): v.decode() for k, v in raw.items()}
        d.setdefault("active", "0")  # a half-written record is never active
        return cls(**{name: decode(d[name]) for name, (_, decode) in _CODECS.items() if name in d})
