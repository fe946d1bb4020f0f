"""The verification stage of a semantic hit: may the answer cached for one prompt be served for another?

The index finds cached prompts whose embedding is close to the new one; this stage decides, for each of
those few candidates, whether the two prompts ask the same thing. It runs, in order:

1. the lexical guards of :mod:`lib.cache.guards` that look for one precise kind of difference: quoted text,
   numbers, swapped directions, other terms of a closed set, names, negations and antonyms;
2. the question words: prompts asking "who" / "when" / "how long"... with different ones refuse;
3. the structural comparison of :mod:`lib.cache.structure`: each content word of one prompt must have its
   counterpart in the other (the same word, a typo, an inflection or derivation, a synonym); an unexplained
   polar word ("not", "only", "without", "before") refuses; when every word has its counterpart, the shared
   words must keep their roles ("Lisbon west of Madrid" / "Madrid west of Lisbon");
4. what is left unexplained. A near-miss usually changes a few words and keeps the rest, and the embedding
   cannot see the change (the rest dominates it), so at ``strict`` (the default) any unexplained word refuses,
   whatever the similarity: in one place or several ("entry-level marketing job" / "senior marketing
   director role"), added or replaced. ``balanced`` also refuses a replacement in one place (a modifier and
   its noun count as one place), an item added to a list ("in French" / "in French and German") and any
   change of the instruction around shared pasted text, but judges other rewordings by the similarity, at
   ``threshold - paraphrase_slack``: more rewordings served ("capital" / "capital city"), and more
   near-misses that add a detail.

So a hit is served when the words are the same (modulo typos, politeness, order, forms and synonyms) with
the same roles, at a similarity of at least ``identical_min`` (``synonym_min`` when synonyms were needed;
typos lower the cosine a lot, and are safe); or, at ``balanced`` only, for a rewording at the similarity bar.
Measured trade-offs are in API.md (``python bench/semantic_eval.py``). Pure Python; a few tenths of a
millisecond a candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

from lib.cache.guards import Features, analyze
from lib.cache.guards.rules import RULES
from lib.cache.structure import Shape, asked, compare, framing, shape

STRICT = "strict"
BALANCED = "balanced"


@dataclass(frozen=True)
class Policy:
    """The knobs of one strictness level."""

    identical_min: float  # cosine floor for prompts with the same words and roles
    synonym_min: float  # the floor when some words are explained only as synonyms ("gift" / "present")
    refuse_replacement: bool  # words of one prompt replaced by others, not synonyms: refused, whatever the cosine
    max_refused_addition: int  # words only added (or only dropped) in at most this many places: refused
    paraphrase_slack: float  # a rewording needs cosine >= threshold - slack


POLICIES = {
    STRICT: Policy(identical_min=0.60, synonym_min=0.75, refuse_replacement=True, max_refused_addition=99,
                   paraphrase_slack=0.0),
    BALANCED: Policy(identical_min=0.60, synonym_min=0.75, refuse_replacement=False, max_refused_addition=0,
                     paraphrase_slack=0.04),
}


@dataclass(frozen=True)
class Prepared:
    """What verification needs of one prompt, computed once (cached prompts keep theirs)."""

    features: Features
    shape: Shape


def prepare(text: str) -> Prepared:
    """Return the :class:`Prepared` form of ``text`` (pure; never raises on any text)."""
    return Prepared(analyze(text), shape(text))


@dataclass(frozen=True)
class Verdict:
    """The decision on one candidate: ``ok``, else which check refused it and what it saw."""

    ok: bool
    check: str | None = None
    detail: str = ""


ALLOW = Verdict(True)


def candidate_floor(threshold: float, strictness: str = STRICT) -> float:
    """The lowest cosine at which a candidate can still be served under ``strictness``."""
    policy = POLICIES[strictness]
    return min(policy.identical_min, threshold - policy.paraphrase_slack)


def verify(new: Prepared, cached: Prepared, similarity: float, *, threshold: float,
           strictness: str = STRICT) -> Verdict:
    """Decide whether ``cached``'s answer may be served for ``new`` (see the module docstring).

    ``similarity`` is their cosine, ``threshold`` the index's bar for rewordings. Raises ``KeyError`` on an
    unknown ``strictness``.
    """
    policy = POLICIES[strictness]
    a, b = new.features, cached.features
    if a.squashed == b.squashed:
        return ALLOW if similarity >= policy.identical_min else Verdict(False, "similarity")
    for reason, rule in RULES:
        if rule(a, b):
            return Verdict(False, reason)
    qa, qb = asked(new.shape), asked(cached.shape)
    if qa and qb and qa != qb:
        return Verdict(False, "question differs", f"{_words(tuple(sorted(qa)))} / {_words(tuple(sorted(qb)))}")
    fa, fb = framing(new.shape), framing(cached.shape)
    if fa and fb and fa.isdisjoint(fb):
        return Verdict(False, "task differs")
    d = compare(new.shape, cached.shape)
    if d.polar:
        return Verdict(False, "polarity differs", _words(d.polar))
    if not d.only_a and not d.only_b:
        if d.neutral_clash:
            return Verdict(False, "relation differs")
        if d.roles_swapped:
            return Verdict(False, "roles swapped")
        floor = policy.synonym_min if d.synonyms else policy.identical_min
        if similarity < floor:
            return Verdict(False, "similarity", f"{similarity:.3f} < {floor:.2f}")
        return ALLOW
    detail = f"{_words(d.only_a)} / {_words(d.only_b)}"
    if d.pasted:
        return Verdict(False, "instruction differs", detail)
    if d.coordinated:
        return Verdict(False, "words added", detail)
    if d.only_a and d.only_b:
        if policy.refuse_replacement or d.edit <= 1:
            return Verdict(False, "words differ", detail)
    elif d.edit <= policy.max_refused_addition:
        return Verdict(False, "words added", detail)
    bar = threshold - policy.paraphrase_slack
    if similarity < bar:
        return Verdict(False, "similarity", f"{similarity:.3f} < {bar:.2f} for a rewording")
    return ALLOW


def _words(words: tuple[str, ...]) -> str:
    return ", ".join(dict.fromkeys(words)) or "-"
