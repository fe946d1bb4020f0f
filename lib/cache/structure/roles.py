"""Roles of the words two prompts share: did a word change its marker, or two words change places?
See :mod:`lib.cache.structure`."""

from __future__ import annotations

import functools
from collections import Counter
from difflib import SequenceMatcher

from lib.cache.structure.words import CONTENT, LIGHT, Shape, lexicon

# grammatical case of the pronouns whose subject and object forms differ: "we owe them" / "they owe us"
_SUBJECT = {"we": "1p", "they": "3p", "he": "3m", "she": "3f"}
_OBJECT = {"us": "1p", "them": "3p", "him": "3m", "her": "3f",  # and possessive: "our landlord wants" / "we want"
           "our": "1p", "their": "3p", "his": "3m"}

# Pasted text is a run of at least _RUN equal words (break marks not counted) that covers at least
# _SHARE of each prompt: a short shared prefix ("write a SQL statement that copies all rows from") is wording.
_RUN = 12
_SHARE = 0.5


def _words_in(x: Shape, start: int, n: int) -> int:
    return sum(1 for k in x.kinds[start:start + n] if k != -1)


@functools.lru_cache(maxsize=256)
def _shared(a: Shape, b: Shape) -> tuple[tuple[tuple[int, int, int], ...], bool]:
    """The runs of at least ``_RUN`` equal words of ``a`` and ``b`` (start in a, start in b, length), and
    whether they are pasted text: they cover at least ``_SHARE`` of each prompt."""
    blocks = SequenceMatcher(None, a.norms, b.norms, autojunk=False).get_matching_blocks()
    runs = tuple((blk.a, blk.b, blk.size) for blk in blocks if blk.size and _words_in(a, blk.a, blk.size) >= _RUN)
    shared = sum(_words_in(a, i, n) for i, _, n in runs)
    longer = max(_words_in(a, 0, len(a.kinds)), _words_in(b, 0, len(b.kinds)))
    return runs, shared >= _RUN and shared >= _SHARE * longer


def pasted(a: Shape, b: Shape) -> bool:
    """True when long runs the prompts share cover at least ``_SHARE`` of each of them."""
    return _shared(a, b)[1]


def instruction(x: Shape, y: Shape, swapped: bool = False) -> list[int]:
    """Positions of ``x`` outside the pasted text it shares with ``y`` (all of them when there is none);
    ``swapped``: compute it from ``y``'s side (the same runs)."""
    runs, is_pasted = _shared(y, x) if swapped else _shared(x, y)
    if not is_pasted:
        return list(range(len(x.words)))
    inside = {i for ry, rx, n in runs for i in range(rx, rx + n)} if swapped else \
        {i for rx, _, n in runs for i in range(rx, rx + n)}
    return [i for i in range(len(x.words)) if i not in inside]


def _roles(x: Shape, positions: list[int], rename: dict[str, str]) -> dict[str, tuple[str, int, bool]]:
    """For each word of the instruction that occurs once: (its marker, its position, whether it is content).

    The marker is the markers since the previous content word in its clause, joined ("than to" in "closer
    to X than to Y"; "" when none); a break mark (comma, full stop, colon...) ends a clause. Markers
    themselves are listed too (as non-content), to serve as pivots.
    """
    markers = lexicon().markers
    marker, chain_open = "", False
    seen: Counter[str] = Counter()
    found: dict[str, tuple[str, int, bool]] = {}
    for order, i in enumerate(positions):
        w, k = x.words[i], x.kinds[i]
        if k == -1:
            marker, chain_open = "", False
            continue
        if w in markers:
            m = rename.get(w, w)
            marker = f"{marker} {m}" if chain_open else m
            chain_open = True
            n = "@" + m
            seen[n] += 1
            found[n] = ("", order, False)
        elif k in (CONTENT, LIGHT):
            n = rename.get(x.norms[i], x.norms[i])
            seen[n] += 1
            found[n] = (marker, order, k == CONTENT)
            if k == CONTENT:
                chain_open = False
    return {n: r for n, r in found.items() if seen[n] == 1}


def _pronoun_case_swapped(a: Shape, ia: list[int], b: Shape, ib: list[int]) -> bool:
    """A person is the subject of one instruction ("we owe them") and only an object or owner in the other
    ("they owe us", "our landlord wants ...")."""
    def cases(x: Shape, positions: list[int]) -> tuple[set[str], set[str]]:
        words = [x.words[i] for i in positions]
        return {_SUBJECT[w] for w in words if w in _SUBJECT}, {_OBJECT[w] for w in words if w in _OBJECT}

    (sa, oa), (sb, ob) = cases(a, ia), cases(b, ib)
    return bool(((sa - sb) & ob) or ((sb - sa) & oa))


def roles_swapped(a: Shape, b: Shape, rename: dict[str, str] | None = None) -> bool:
    """True when words the two instructions share play other roles in each (``rename``: b's spelling -> a's).

    Three signs: a content word moved from one marker to another ("from X" / "to X"); two content words
    exchanged markers ("Lisbon west of Madrid" / "Madrid west of Lisbon"); or two content words changed
    order around a word that stays between them in both ("Acme sued Globex" / "Globex sued Acme"). A clause
    moved as a whole keeps every word's marker, and no word lies between two words of different clauses in
    both orders, so it is not a swap.
    """
    ia, ib = instruction(a, b), instruction(b, a, swapped=True)
    if _pronoun_case_swapped(a, ia, b, ib):
        return True
    ra = _roles(a, ia, {})
    rb = _roles(b, ib, rename or {})
    shared = [n for n in ra if n in rb]
    content = [n for n in shared if ra[n][2]]
    moved = [n for n in content if ra[n][0] != rb[n][0]]
    if any(ra[n][0] and rb[n][0] for n in moved):
        return True
    for i, x in enumerate(moved):
        for y in moved[i + 1:]:
            if ra[x][0] == rb[y][0] and ra[y][0] == rb[x][0]:
                return True
    pos_a = {n: ra[n][1] for n in shared}
    pos_b = {n: rb[n][1] for n in shared}
    for x in content:
        for y in content:
            if pos_a[x] < pos_a[y] and pos_b[x] > pos_b[y] and any(
                    pos_a[x] < pos_a[p] < pos_a[y] and pos_b[y] < pos_b[p] < pos_b[x] for p in shared):
                return True
    return False
