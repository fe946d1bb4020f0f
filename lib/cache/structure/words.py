"""Words of a prompt for the structural comparison: each word's class (light, neutral, polar, content) and
its normalised form. See :mod:`lib.cache.structure`."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from lib.cache.guards.lexicon import CARDINALS, ORDINALS, SYNONYM_INDEX, read_sections
from lib.cache.guards.morph import normalize, stem
from lib.cache.structure.synonyms import irregular_base, phrase_at

LIGHT, NEUTRAL, POLAR, CONTENT = 0, 1, 2, 3
_WORD = re.compile(r"q:[a-z0-9_]+|[a-z0-9]+(?:_[a-z0-9]+)*(?:'[a-z]+)*|[.,;:!?()\[\]\n]|->|→")
# a short quoted string is one token: its words are a name, not words in roles of their own
_QUOTED = re.compile(r"(?<![A-Za-z0-9])(['\"`])([^'\"`\n]{1,60}?)\1(?![A-Za-z0-9])")
_THOUSANDS = re.compile(r"(\d),(\d{3})\b")
_LETTER_A = re.compile(r"(?<=[A-Za-z0-9] )A\b")  # "column A", "Series A": a name, not the article
_BREAKS = frozenset(".,;:!?()[]\n") | {"->", "→"}


@dataclass(frozen=True)
class _Lexicon:
    light: frozenset[str]  # words and their stems
    relative: frozenset[str]  # light unless they open a clause
    light_long: tuple[str, ...]  # light words of 4 letters or more (their typos are light too)
    polar: dict[str, frozenset[int]]  # word -> the classes it belongs to
    neutral: dict[str, frozenset[int]]
    markers: frozenset[str]
    vocab: frozenset[str]
    numbers: dict[str, str]  # "three" -> "3"

    def is_function(self, word: str) -> bool:
        """A light word, a preposition or particle, or a polar word (not content)."""
        return word in self.light or word in self.neutral or word in self.polar or word in self.markers


@functools.lru_cache(maxsize=1)
def lexicon() -> _Lexicon:
    """The function-word classes and the tokenizer's whole-word vocabulary, read once."""
    sections = read_sections("function_words.txt")
    words = lambda name: frozenset(w for line in sections[name] for w in line.split())  # noqa: E731

    def classes(name: str) -> dict[str, frozenset[int]]:
        out: dict[str, set[int]] = {}
        for cid, line in enumerate(sections[name]):
            for w in line.split():
                out.setdefault(w, set()).add(cid)
        return {w: frozenset(c) for w, c in out.items()}

    light = words("light")
    numbers = {w: str(v) for w, v in CARDINALS.items()} | {w: str(v) for w, v in ORDINALS.items()}
    return _Lexicon(light=light | frozenset(stem(w) for w in light if len(w) > 3), relative=words("relative"),
                    light_long=tuple(sorted(w for w in light if len(w) >= 4 and "'" not in w)),
                    polar=classes("polar"),
                    neutral=classes("neutral"), markers=words("markers"), vocab=_tokenizer_vocab(),
                    numbers=numbers)


def _tokenizer_vocab() -> frozenset[str]:
    """Whole words of the model's WordPiece vocabulary ("remove" is one piece, "remvoe" is not)."""
    try:
        from lib.cache.embedder import find_model_path

        with open(os.path.join(find_model_path(), "vocab.txt"), encoding="utf-8") as f:
            return frozenset(w for w in (line.strip() for line in f) if w.isalpha())
    except Exception:  # noqa: BLE001 - no model installed: every word counts as known, no typo is forgiven
        return frozenset()


@dataclass(frozen=True)
class Shape:
    """One prompt's words as the structural comparison sees them (see :func:`shape`)."""

    words: tuple[str, ...]  # lower-cased words and break marks, in order
    kinds: tuple[int, ...]  # LIGHT / NEUTRAL / POLAR / CONTENT per word (-1 for a break mark)
    norms: tuple[str, ...]  # stem with synonyms mapped, for content words; the word itself otherwise


def shape(text: str) -> Shape:
    """Return the :class:`Shape` of ``text`` (pure function of the text)."""
    lex = lexicon()
    words, kinds, norms = [], [], []
    opens = True  # nothing but light words since the last break
    text = _LETTER_A.sub("a0", _THOUSANDS.sub(r"\1\2", normalize(text)))
    text = _QUOTED.sub(lambda m: " q:" + "_".join(re.findall(r"[a-z0-9]+", m.group(2).lower())) + " ", text)
    tokens = _WORD.findall(text.lower())
    i = 0
    while i < len(tokens):
        w = tokens[i]
        i += 1
        joined = phrase_at(tokens, i - 1, lex.is_function) if w[0].isalpha() else None
        if joined is not None:  # a verb phrase is one word ("turn down", "get rid of")
            phrase, n = joined
            words.append(phrase), kinds.append(CONTENT), norms.append(phrase)
            i += n - 1
            opens = False
            continue
        if w in _BREAKS:
            words.append(w), kinds.append(-1), norms.append(w)
            opens = True
            continue
        if w.endswith("'s") and len(w) > 2:
            w = w[:-2]
        w = lex.numbers.get(w, w)
        if w in lex.relative:
            kind = CONTENT if opens else LIGHT
        elif w in lex.light or (len(w) > 4 and stem(w) in lex.light):
            kind = LIGHT
        elif w in lex.polar or w.endswith("n't"):
            kind = POLAR
        elif w in lex.neutral:
            kind = NEUTRAL
        else:
            kind = CONTENT
        words.append(w)
        kinds.append(kind)
        norms.append(norm_word(w) if kind == CONTENT else w)
        opens = opens and kind == LIGHT
    return Shape(tuple(words), tuple(kinds), tuple(norms))


def norm_word(word: str) -> str:
    if word[0].isdigit() or "_" in word:
        return word
    s = stem(irregular_base(word))
    return SYNONYM_INDEX.get(s, s)


_DERIVATIONS = ("ations", "ation", "ition", "ments", "ment", "ences", "ence", "ances", "ance", "ions", "ion",
                "ness", "ity")


def root(word: str) -> str:
    """The stem of ``word`` without a derivational ending ("difference" -> "differ", "payment" -> "pay")."""
    for suffix in _DERIVATIONS:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return stem(word[: -len(suffix)])
    return stem(word)


def one_edit(s: str, t: str) -> bool:
    """True when ``s`` and ``t`` differ by one insertion, deletion, substitution or adjacent swap."""
    if s == t or abs(len(s) - len(t)) > 1:
        return s == t
    if len(s) == len(t):
        diff = [k for k in range(len(s)) if s[k] != t[k]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and s[diff[0]] == t[diff[1]] and s[diff[1]] == t[diff[0]])
    if len(s) > len(t):
        s, t = t, s
    k = 0
    while k < len(s) and s[k] == t[k]:
        k += 1
    return s[k:] == t[k + 1:]
