"""The rules: each looks for one kind of difference between two prompts' :class:`Features` that changes the
answer while barely moving the embedding. Each returns True when it finds its difference.

:func:`check_features` runs them in order and returns the reason of the first that fires (see the table
in :mod:`lib.cache.guards`). The rules are deliberately one-sided: a refused hit costs one upstream call,
a wrong hit serves a wrong answer.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Callable

from lib.cache.guards.features import Features, analyze, task_phrase_positions, tasks_of
from lib.cache.guards.lexicon import (
    ANTONYM_GROUPS,
    GROUP_STEM_INDEX,
    INSTRUCTION_GENERIC,
    STOPWORDS,
    STRICT_KINDS,
    SYNONYM_INDEX,
    TASK_STEMS,
    TASK_WORDS,
)
from lib.cache.guards.morph import stem

Rule = Callable[[Features, Features], bool]


# ------------------------------------------------------------------------------ quotes and numbers
def quoted_text_differs(a: Features, b: Features) -> bool:
    """A quoted/backticked string of one prompt is absent from the other."""
    return any(q not in other.squashed for mine, other in ((a, b), (b, a)) for q in mine.quotes)


def numbers_differ(a: Features, b: Features) -> bool:
    """The sets of numbers, times, dates and codes (A1, Q3, INV-2043) differ."""
    return a.numbers != b.numbers


# ---------------------------------------------------------------------------------------- direction
def direction_swapped(a: Features, b: Features) -> bool:
    """The same languages/units/formats with source and target exchanged, or "from X to Y" vs "from Y to X"."""
    for kind in set(a.roles) & set(b.roles):
        sa, ta, _ = a.roles[kind]
        sb, tb, _ = b.roles[kind]
        if (sa & tb) or (ta & sb):
            return True
    return any((y, x) in b.edges for (x, y) in a.edges if x != y)


def convertible_terms_differ(a: Features, b: Features) -> bool:
    """Another target or source of one kind ("into French" vs "into Greek"), or other terms of a strict kind."""
    for kind in set(a.roles) & set(b.roles):
        sa, ta, ma = a.roles[kind]
        sb, tb, mb = b.roles[kind]
        if (ta and tb and ta != tb) or (sa and sb and sa != sb):
            return True
        if kind in STRICT_KINDS:
            all_a, all_b = sa | ta | ma, sb | tb | mb
            if (all_a - all_b) and (all_b - all_a):
                return True
    return False


# ----------------------------------------------------------------------------------------- negation
def negation_differs(a: Features, b: Features) -> bool:
    """One prompt negates (not, without, never, exclude...) and the other does not."""
    if a.has_negation == b.has_negation:
        return False
    neg, other = (a, b) if a.has_negation else (b, a)
    # "not eligible" against "ineligible": the other prompt negates the same word with a prefix
    prefixed = {item[4:] for item in other.groups.get(-1, ()) if item.startswith("neg:")}
    return not (neg.negated & prefixed)


def negation_moved(a: Features, b: Features) -> bool:
    """Both negate, but each negates something the other asserts."""
    if not (a.has_negation and b.has_negation):
        return False
    plain_a = a.stems - a.negated
    plain_b = b.stems - b.negated
    return bool(((a.negated - b.negated) & plain_b) and ((b.negated - a.negated) & plain_a))


def antonyms_used(a: Features, b: Features) -> bool:
    """One prompt has one side of an antonym pair (and not the other), the other prompt the reverse."""
    for gid in ANTONYM_GROUPS:
        ga, gb = a.groups.get(gid), b.groups.get(gid)
        if ga and gb and (ga - gb) and (gb - ga):
            return True
    return False


def prefix_negation(a: Features, b: Features) -> bool:
    """"unlock" against "lock" (but not against "not locked", which says the same)."""
    for x, y in ((a, b), (b, a)):
        px, py = x.groups.get(-1, frozenset()), y.groups.get(-1, frozenset())
        for item in px:
            if item.startswith("neg:"):
                base = item[4:]
                if "pos:" + base in py and item not in py and "pos:" + base not in px and base not in y.negated:
                    return True
    return False


# -------------------------------------------------------------------------------------------- terms
def closed_set_member_differs(a: Features, b: Features) -> bool:
    """A different member of a closed set (weekday, period, department, product...)."""
    for gid in set(a.groups) & set(b.groups):
        if gid < 0 or gid in ANTONYM_GROUPS:
            continue
        ga, gb = a.groups[gid], b.groups[gid]
        if (ga - gb) and (gb - ga):
            return True
    return False


def proper_nouns_differ(a: Features, b: Features) -> bool:
    """Each prompt names someone or something (a capitalised word, an acronym) the other does not."""
    return bool((a.proper - b.raw_stems) and (b.proper - a.raw_stems))


# ------------------------------------------------------------------------- prompts without a payload
def tasks_disjoint(a: Features, b: Features) -> bool:
    """Both prompts name a task and no task is common to them."""
    return bool(a.tasks and b.tasks and a.tasks.isdisjoint(b.tasks))


def single_word_swapped(a: Features, b: Features) -> bool:
    """The same content words except one, swapped for a word that is not a synonym ("merge" vs "concatenate").

    A longer rewording is the embedding's business; names, products and languages have their own rules.
    """
    ops = [op for op in SequenceMatcher(None, a.content, b.content, autojunk=False).get_opcodes() if op[0] != "equal"]
    if len(ops) == 1 and ops[0][0] == "replace":
        _, i1, i2, j1, j2 = ops[0]
        old, new = a.content[i1:i2], b.content[j1:j2]
        if len(old) == 1 and len(new) == 1 and not (meanings(old) & meanings(new)):
            return True
    return False


def meanings(words: tuple[str, ...] | set[str]) -> set[str]:
    """What stems stand for: the word, its synonym group, its task and its member of a closed set."""
    out = set()
    for w in words:
        out.add("w:" + w)
        out.add("s:" + SYNONYM_INDEX.get(w, w))
        task = TASK_WORDS.get(w) or TASK_STEMS.get(w)
        if task:
            out.add("t:" + task)
        for gid, member in GROUP_STEM_INDEX.get(w, ()):
            out.add("g:%d:%s" % (gid, member))
    return out


# ------------------------------------------------------------------------- prompts sharing a payload
PAYLOAD_MIN_RUN = 6  # shared runs at least this long count as pasted text, not wording
PAYLOAD_MIN_TOKENS = 8
PAYLOAD_MIN_SHARE = 0.5

Residual = tuple[list[str], set[int]]  # a prompt's words, and the positions that are pasted text


def shared_text(a: Features, b: Features) -> tuple[Residual, Residual] | None:
    """When most of both prompts is the same pasted text, return each prompt's words and the positions of
    the pasted text in them; else None."""
    ta = [t for t in a.tokens if t[0].isalnum()]
    tb = [t for t in b.tokens if t[0].isalnum()]
    if min(len(ta), len(tb)) < PAYLOAD_MIN_TOKENS:
        return None
    blocks = [blk for blk in SequenceMatcher(None, ta, tb, autojunk=False).get_matching_blocks()
              if blk.size >= PAYLOAD_MIN_RUN]
    shared = sum(blk.size for blk in blocks)
    if shared < PAYLOAD_MIN_TOKENS or shared < PAYLOAD_MIN_SHARE * min(len(ta), len(tb)):
        return None
    in_a: set[int] = set()
    in_b: set[int] = set()
    for blk in blocks:
        in_a.update(range(blk.a, blk.a + blk.size))
        in_b.update(range(blk.b, blk.b + blk.size))
    return (ta, in_a), (tb, in_b)


def instruction_tasks_differ(res_a: Residual, res_b: Residual) -> bool:
    """Around the same pasted text, the words outside it ask for another set of tasks."""
    (ta, in_a), (tb, in_b) = res_a, res_b
    return tasks_of(ta, outside=in_a) != tasks_of(tb, outside=in_b)


def instruction_details_differ(res_a: Residual, res_b: Residual) -> bool:
    """Around the same pasted text, each instruction has a detail the other lacks ("for the CEO" vs "for
    engineers"). The embedding says nothing here (the pasted text dominates it), so this is strict."""
    (ta, in_a), (tb, in_b) = res_a, res_b
    skip_a, skip_b = task_phrase_positions(ta, in_a), task_phrase_positions(tb, in_b)
    words_a = {stem(w) for i, w in enumerate(ta)
               if i not in in_a and i not in skip_a and w not in STOPWORDS and w not in TASK_WORDS}
    words_b = {stem(w) for i, w in enumerate(tb)
               if i not in in_b and i not in skip_b and w not in STOPWORDS and w not in TASK_WORDS}
    extra_a = {w for w in words_a - words_b if w not in INSTRUCTION_GENERIC and not w[0].isdigit()}
    extra_b = {w for w in words_b - words_a if w not in INSTRUCTION_GENERIC and not w[0].isdigit()}
    return bool(extra_a and extra_b and not (meanings(extra_a) & meanings(extra_b)))


# ------------------------------------------------------------------------------------------- checks
# (reason, rule), in the order they run on every pair
RULES: tuple[tuple[str, Rule], ...] = (
    ("quoted text differs", quoted_text_differs),
    ("numbers differ", numbers_differ),
    ("direction swapped", direction_swapped),
    ("terms differ", convertible_terms_differ),
    ("negation", negation_differs),
    ("negation", negation_moved),
    ("negation", antonyms_used),
    ("negation", prefix_negation),
    ("terms differ", closed_set_member_differs),
    ("terms differ", proper_nouns_differ),
)
# then, for prompts that share no pasted text
SHORT_RULES: tuple[tuple[str, Rule], ...] = (
    ("instruction differs", tasks_disjoint),
    ("terms differ", single_word_swapped),
)
# or, for prompts around the same pasted text
PAYLOAD_RULES: tuple[tuple[str, Callable[[Residual, Residual], bool]], ...] = (
    ("instruction differs", instruction_tasks_differ),
    ("instruction differs", instruction_details_differ),
)


def check_pair(new_prompt: str, cached_prompt: str) -> str | None:
    """Return None when a semantic hit of ``new_prompt`` on ``cached_prompt`` is allowed, else the reason.

    Reasons: ``quoted text differs``, ``numbers differ``, ``direction swapped``, ``negation``,
    ``terms differ``, ``instruction differs``. Never raises on any text.
    """
    return check_features(analyze(new_prompt), analyze(cached_prompt))


def check_features(a: Features, b: Features) -> str | None:
    """:func:`check_pair` on features from :func:`analyze` (lets a caller reuse a cached prompt's)."""
    if a.squashed == b.squashed:
        return None
    for reason, rule in RULES:
        if rule(a, b):
            return reason
    shared = shared_text(a, b)
    if shared is None:
        for reason, rule in SHORT_RULES:
            if rule(a, b):
                return reason
        return None
    for reason, payload_rule in PAYLOAD_RULES:
        if payload_rule(*shared):
            return reason
    return None
