"""Tokens, quoted strings and normalised numbers of a prompt: the raw material of :mod:`.features`."""

from __future__ import annotations

import re
from typing import Callable

from lib.cache.guards.lexicon import (
    CARDINALS,
    MULTIPLICATIVES,
    ONE_PRONOUN_AFTER,
    ONE_PRONOUN_BEFORE,
    ORDINALS,
    PHRASES,
    SCALES,
    SECOND_UNIT_BEFORE,
)
from lib.cache.guards.morph import squash

TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|->|→|[.!?;:,()\n]")
RAW_WORD_RE = re.compile(r"[a-z0-9]+")
SENTENCE_BREAK = {".", "!", "?", ";", ":", "\n", "("}


def tokens(lower: str) -> list[str]:
    """Words and punctuation of a lower-cased prompt, multi-word names joined ("c++" -> "cpp")."""
    for key, pattern, repl in PHRASES:
        if key in lower:
            lower = pattern.sub(repl, lower)
    out = []
    for t in TOKEN_RE.findall(lower):
        if "'" in t and not t.endswith("n't"):
            t = t.split("'", 1)[0]  # what's, customer's, you're, we'll -> the word itself
        out.append(t)
    return out


# ------------------------------------------------------------------------------------------- quotes
_QUOTE_RES = (
    re.compile(r"```(?:[a-z]*\n)?(.+?)```", re.S),
    re.compile(r"`([^`\n]+)`"),
    re.compile(r'"([^"\n]{1,400}?)"'),
    re.compile(r"(?<![A-Za-z0-9])'([^'\n]{1,400}?)'(?![A-Za-z0-9])"),
    re.compile(r"«([^»\n]{1,400}?)»"),
)


def quotes(text: str) -> tuple[str, ...]:
    """The quoted, backticked and fenced strings of ``text``, squashed."""
    found = []
    for pattern in _QUOTE_RES:
        for m in pattern.finditer(text):
            q = squash(m.group(1)).strip(" .,!?;:")
            if q:
                found.append(q)
    return tuple(found)


# ------------------------------------------------------------------------------------------ numbers
_TIME_AMPM = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*([ap])\.?m\b\.?", re.I)
_TIME_HM = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_VERSION = re.compile(r"\b\d+(?:\.\d+){2,}\b")
_ORDINAL_NUM = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b", re.I)
_MAGNITUDE = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)(k|m|mm|bn|b)\b(?![-\w])", re.I)  # 300k, 1.2M
_CODE = re.compile(r"\b[A-Za-z][A-Za-z]*-?\d[\w-]*\b")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)")
_MULT = {"k": 1e3, "m": 1e6, "mm": 1e6, "bn": 1e9, "b": 1e9}


def _fmt(value: float) -> str:
    return ("%.6f" % value).rstrip("0").rstrip(".")


def numbers(text: str, words: list[str]) -> frozenset[str]:
    """Normalised numbers of a prompt: times as HH:MM, dates, versions, codes (a1, q3), values, number words."""
    found: set[str] = set()

    def take(pattern: re.Pattern[str], fn: Callable[[re.Match[str]], str]) -> None:
        """Collect what ``pattern`` finds and blank it out, so later patterns do not count it again."""
        nonlocal text
        out = []
        last = 0
        for m in pattern.finditer(text):
            found.add(fn(m))
            out.append(text[last : m.start()])
            out.append(" ")
            last = m.end()
        out.append(text[last:])
        text = "".join(out)

    take(_TIME_AMPM, lambda m: "%02d:%s" % (int(m.group(1)) % 12 + (12 if m.group(3).lower() == "p" else 0),
                                           m.group(2) or "00"))
    take(_TIME_HM, lambda m: "%02d:%s" % (int(m.group(1)), m.group(2)))
    take(_ISO_DATE, lambda m: m.group(0))
    take(_VERSION, lambda m: "v" + m.group(0))
    take(_ORDINAL_NUM, lambda m: str(int(m.group(1))))
    take(_MAGNITUDE, lambda m: _fmt(float(m.group(1).replace(",", "")) * _MULT[m.group(2).lower()]))
    take(_CODE, lambda m: m.group(0).lower().replace("-", "").replace("_", ""))
    take(_NUMBER, lambda m: _fmt(float(m.group(1).replace(",", ""))))
    found.update(number_words(words))
    return frozenset(found)


def number_words(tokens: list[str]) -> set[str]:
    """Values of spelled-out numbers: "three", "twenty five", "two hundred", "a dozen", "third"."""
    values: set[str] = set()
    i, n = 0, len(tokens)
    while i < n:
        t = tokens[i]
        if t in ORDINALS and not (t == "second" and i > 0 and tokens[i - 1] in SECOND_UNIT_BEFORE):
            values.add(str(ORDINALS[t]))
            i += 1
            continue
        if t == "one" and ((i > 0 and tokens[i - 1] in ONE_PRONOUN_BEFORE) or
                           (i + 1 < n and tokens[i + 1] in ONE_PRONOUN_AFTER)):
            i += 1
            continue
        if t in CARDINALS or (t == "a" and i + 1 < n and tokens[i + 1] in ("hundred", "thousand", "dozen")):
            total, current, j = 0, 0, i
            while j < n and (tokens[j] in CARDINALS or tokens[j] in SCALES or
                             (tokens[j] in ("a", "and") and j + 1 < n and
                              (tokens[j + 1] in CARDINALS or tokens[j + 1] in SCALES))):
                w = tokens[j]
                if w in CARDINALS:
                    current += CARDINALS[w]
                elif w in SCALES:
                    scale = SCALES[w]
                    current = max(current, 1) * scale
                    if scale >= 1000:
                        total += current
                        current = 0
                j += 1
            values.add(str(total + current))
            i = j
            continue
        if t in MULTIPLICATIVES:
            values.add(str(MULTIPLICATIVES[t]))
        i += 1
    return values
