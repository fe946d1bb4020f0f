"""Text normalisation and a crude English stemmer, shared by the lexicon and the feature extractors."""

from __future__ import annotations

import unicodedata


def normalize(text: str) -> str:
    """Return ``text`` in NFKC form with curly quotes made straight."""
    text = unicodedata.normalize("NFKC", text)
    return text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')


def squash(text: str) -> str:
    """Return ``text`` case-folded with runs of whitespace made one space."""
    return " ".join(text.casefold().split())


def stem(word: str) -> str:
    """Return a crude stem of a lower-case word (plural, -ing, -ed, -ly and a final -e removed)."""
    w = word
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 4 and w.endswith("sses"):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) > 4 and w.endswith("ied"):
        w = w[:-3] + "y"
    elif len(w) > 4 and w.endswith("ed"):
        w = w[:-2]
    elif len(w) > 5 and w.endswith("ly"):
        w = w[:-2]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiousl":
        w = w[:-1]  # "planned" -> "plann" -> "plan"
    return w
