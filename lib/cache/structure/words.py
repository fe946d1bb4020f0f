"""Words of a prompt for the structural comparison: each word's class (light, neutral, polar, content) and
its normalised form. See :mod:`lib.cache.structure`."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from lib.cache.guards.lexicon import (CARDINALS, ONE_PRONOUN_AFTER, ONE_PRONOUN_BEFORE, ORDINALS, SYNONYM_INDEX,
                                      read_sections)
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
    light_stems: frozenset[str]  # stems of light words of 5 letters or more ("thanks" -> "thank"; not "them")
    relative: frozenset[str]  # light unless they open a clause
    light_long: tuple[str, ...]  # light words of 4 letters or more (their typos are light too)
    polar: dict[str, frozenset[int]]  # word -> the classes it belongs to
    neutral: dict[str, frozenset[int]]
    markers: frozenset[str]
    vocab: frozenset[str]
    numbers: dict[str, str]  # "three" -> "3"
    light_phrases: dict[str, list[tuple[str, ...]]]  # first word -> light phrases starting with it
    framing: dict[str, frozenset[int]]  # light word -> the kinds of answer it asks for
    function_long: tuple[str, ...]  # function words of 3 letters or more (their typos are those words)

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
    phrases: dict[str, list[tuple[str, ...]]] = {}
    for line in sections["light_phrases"]:
        phrase = tuple(line.split())
        phrases.setdefault(phrase[0], []).append(phrase)
    function = light | words("neutral") | words("polar") | words("markers")
    numbers = {w: str(v) for w, v in CARDINALS.items()} | {w: str(v) for w, v in ORDINALS.items()}
    return _Lexicon(light=light | frozenset(stem(w) for w in light if len(w) > 3),
                    light_stems=frozenset(stem(w) for w in light if len(w) >= 5), relative=words("relative"),
                    light_long=tuple(sorted(w for w in light if len(w) >= 4 and "'" not in w)),
                    polar=classes("polar"),
                    neutral=classes("neutral"), markers=words("markers"), vocab=_tokenizer_vocab(),
                    numbers=numbers, light_phrases=phrases, framing=classes("framing"),
                    function_long=tuple(sorted(w for w in function if len(w) >= 3 and w.isalpha())))


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
    light_at = _light_phrases(tokens, lex.light_phrases)
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
        prev, nxt = (tokens[i - 2] if i >= 2 else ""), (tokens[i] if i < len(tokens) else "")
        if w == "one" and (prev in ONE_PRONOUN_BEFORE or nxt in ONE_PRONOUN_AFTER):
            w = "one."  # "which one", "one of": a pronoun, not the number
        w = lex.numbers.get(w, w)
        w = _function_typo(w)
        if w == "one." or (i - 1) in light_at or (w in ("below", "above") and (not nxt or nxt in _BREAKS)):
            kind = LIGHT  # politeness ("thanks in advance"), "the email below:"
        elif w in lex.relative:
            kind = CONTENT if opens else LIGHT
        elif w in lex.light or (len(w) > 4 and stem(w) in lex.light_stems):
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


_ASKING = {"who": "who", "whom": "who", "whose": "whose", "when": "when", "where": "where", "why": "why"}
_HOW = frozenset("long much many often far old soon big large tall wide deep".split())


def asked(x: Shape) -> frozenset[str]:
    """The specific question words that open a clause of ``x`` ("who", "when", "how long", "how many"):
    two prompts asking with different ones ask different things, whatever else they share."""
    out = set()
    opens = True
    for i, (w, k) in enumerate(zip(x.words, x.kinds)):
        if k == -1:
            opens = True
            continue
        if opens and w in _ASKING:
            out.add(_ASKING[w])
        elif opens and w == "how" and i + 1 < len(x.words) and x.words[i + 1] in _HOW:
            out.add("how " + x.words[i + 1])
        opens = (opens and k == LIGHT and w not in ("how", "what", "which")) or w in ("and", "or")
    return frozenset(out)


def framing(x: Shape) -> frozenset[int]:
    """The kinds of answer the light words of ``x`` ask for (a definition, advice...)."""
    classes = lexicon().framing
    out: frozenset[int] = frozenset()
    for w, k in zip(x.words, x.kinds):
        if k == LIGHT and w in classes:
            out |= classes[w]
    return out


def _light_phrases(tokens: list[str], phrases: dict[str, list[tuple[str, ...]]]) -> set[int]:
    """Positions of the words of light phrases ("thanks in advance", "if you could", "good morning")."""
    out: set[int] = set()
    for i, w in enumerate(tokens):
        for phrase in phrases.get(w, ()):
            if tuple(tokens[i:i + len(phrase)]) == phrase:
                out.update(range(i, i + len(phrase)))
    return out


@functools.lru_cache(maxsize=8192)
def _function_typo(word: str) -> str:
    """The function word that ``word`` misspells ("teh" -> "the", "abuot" -> "about"), else ``word``: only a
    word the model's vocabulary does not know, one edit from a function word (an adjacent swap when short)."""
    lex = lexicon()
    if not lex.vocab or word in lex.vocab or not word.isalpha() or len(word) < 3 or len(word) > 8:
        return word
    for f in lex.function_long:
        if abs(len(f) - len(word)) <= 1 and one_edit(word, f) and (len(word) >= 4 or sorted(word) == sorted(f)):
            return f
    return word


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
