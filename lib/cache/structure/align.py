"""Alignment of two prompts' words: what each has that the other lacks. See :mod:`lib.cache.structure`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from lib.cache.structure.roles import pasted, roles_swapped
from lib.cache.structure.synonyms import same_meaning
from lib.cache.structure.words import CONTENT, LIGHT, NEUTRAL, POLAR, Shape, norm_word, one_edit, lexicon, root

@dataclass(frozen=True)
class Difference:
    """What :func:`compare` found: unexplained words of each prompt, and what the roles check said."""

    only_a: tuple[str, ...]  # unexplained content words of the first prompt (as written)
    only_b: tuple[str, ...]
    polar: tuple[str, ...]  # unexplained polar words of either prompt
    neutral_clash: bool  # both prompts have unexplained prepositions of no common class
    roles_swapped: bool  # nothing unexplained, but shared words play other roles
    pasted: bool  # most of both prompts is the same pasted text: only the instructions around it differ
    regions_a: int = 0  # runs of adjacent unexplained words in the first prompt ("bullet points" is one)
    regions_b: int = 0
    synonyms: bool = False  # some words are explained only as synonyms of the other prompt's
    coordinated: bool = False  # an unexplained word is added to a list ("in French and German")

    @property
    def unexplained(self) -> int:
        """How many content words are unexplained, both prompts together (a preposition clash counts one)."""
        return len(self.only_a) + len(self.only_b) + int(self.neutral_clash)

    @property
    def edit(self) -> int:
        """How many places the rewording changed: the larger side's count of runs of unexplained words."""
        return max(self.regions_a, self.regions_b)


def compare(a: Shape, b: Shape) -> Difference:
    """Align the words of ``a`` and ``b`` (see the module docstring); symmetric in ``a`` and ``b``."""
    lex = lexicon()
    a, b = _join_split_words(a, b), _join_split_words(b, a)
    left_a = _leftovers(a, b)
    left_b = _leftovers(b, a)
    pol_a = [a.words[i] for i in left_a if a.kinds[i] == POLAR]
    pol_b = [b.words[i] for i in left_b if b.kinds[i] == POLAR]
    polar = tuple(_unmatched(pol_a, pol_b, lex.polar)) + tuple(_unmatched(pol_b, pol_a, lex.polar))
    neut_a = [a.words[i] for i in left_a if a.kinds[i] == NEUTRAL]
    neut_b = [b.words[i] for i in left_b if b.kinds[i] == NEUTRAL]
    clash = bool(neut_a and neut_b and not any(lex.neutral[x] & lex.neutral[y] for x in neut_a for y in neut_b))
    cont_a = [i for i in left_a if a.kinds[i] == CONTENT]
    cont_b = [i for i in left_b if b.kinds[i] == CONTENT]
    rename: dict[str, str] = {}  # norm in b -> the norm in a it is a typo of
    before = len(cont_a) + len(cont_b)
    cont_a, cont_b = _forgive_typos(a, b, cont_a, cont_b, rename)
    typos = len(rename)
    cont_a, cont_b = _forgive_synonyms(a, b, cont_a, cont_b, rename)
    synonyms = len(cont_a) + len(cont_b) < before and len(rename) > typos
    only_a = tuple(a.words[i] for i in cont_a)
    only_b = tuple(b.words[i] for i in cont_b)
    swapped = False
    if not only_a and not only_b and not polar and not clash:
        rename.update(_class_pairs(neut_b, neut_a, lex.neutral))
        rename.update(_class_pairs(pol_b, pol_a, lex.polar))
        swapped = roles_swapped(a, b, rename)
    coordinated = _coordinated(a, cont_a) or _coordinated(b, cont_b)
    return Difference(only_a, only_b, polar, clash, swapped, pasted(a, b), _regions(a, cont_a), _regions(b, cont_b),
                      synonyms, coordinated)


def _coordinated(x: Shape, positions: list[int]) -> bool:
    """An unexplained word follows "and" / "or" (light words between): an item added to a list."""
    for i in positions:
        j = i - 1
        while j >= 0 and x.kinds[j] == LIGHT:
            j -= 1
        if j >= 0 and x.words[j] in ("and", "or", "plus"):
            return True
    return False


def _regions(x: Shape, positions: list[int]) -> int:
    """How many places the unexplained words at ``positions`` occupy: runs of them, where a run goes on over
    light words, prepositions and at most one other word ("three bullet points", "entry-level marketing
    job"), and ends at a polar word or a break."""
    runs, last = 0, None
    for i in sorted(positions):
        between = x.kinds[last + 1:i] if last is not None else ()
        if last is None or any(k in (POLAR, -1) for k in between) or sum(k == CONTENT for k in between) > 1:
            runs += 1
        last = i
    return runs


def _join_split_words(x: Shape, y: Shape) -> Shape:
    """``x`` with adjacent words joined where ``y`` writes them as one ("drop down" -> "dropdown")."""
    whole = {w for w, k in zip(y.words, y.kinds) if k == CONTENT}
    ws, ks, ns = list(x.words), list(x.kinds), list(x.norms)
    i, changed = 0, False
    while i + 1 < len(ws):
        joined = ws[i] + ws[i + 1]
        if ks[i] != -1 and ks[i + 1] != -1 and joined in whole and joined not in ws:
            ws[i:i + 2], ks[i:i + 2], ns[i:i + 2] = [joined], [CONTENT], [norm_word(joined)]
            changed = True
        i += 1
    return Shape(tuple(ws), tuple(ks), tuple(ns)) if changed else x


def _leftovers(x: Shape, y: Shape) -> list[int]:
    """Positions of the non-light words of ``x`` that ``y`` lacks (multiset difference on norms)."""
    have = Counter(n for n, k in zip(y.norms, y.kinds) if k > LIGHT)
    out = []
    for i, (n, k) in enumerate(zip(x.norms, x.kinds)):
        if k <= LIGHT:
            continue
        if have[n] > 0:
            have[n] -= 1
        else:
            out.append(i)
    return out


def _unmatched(mine: list[str], other: list[str], classes: dict[str, frozenset[int]]) -> list[str]:
    """Words of ``mine`` with no word of a common class in ``other``."""
    return [x for x in mine if not any(classes.get(x, frozenset()) & classes.get(y, frozenset()) for y in other)
            and not (x.endswith("n't") and any(y.endswith("n't") or y in ("not", "no") for y in other))]


def _class_pairs(xs: list[str], ys: list[str], classes: dict[str, frozenset[int]]) -> dict[str, str]:
    """Each word of ``xs`` mapped to a word of ``ys`` of a common class ("into" -> "to")."""
    out = {}
    for x in xs:
        for y in ys:
            if classes.get(x, frozenset()) & classes.get(y, frozenset()):
                out[x] = y
                break
    return out


def _forgive_typos(a: Shape, b: Shape, cont_a: list[int], cont_b: list[int],
                   rename: dict[str, str]) -> tuple[list[int], list[int]]:
    """Drop leftovers that are typos or derivations of a leftover of the other prompt."""
    vocab = lexicon().vocab
    for i in list(cont_a):
        wa = a.words[i]
        for j in cont_b:
            wb = b.words[j]
            if wa[0].isdigit() or wb[0].isdigit():
                continue
            if (vocab and len(wa) >= 4 and len(wb) >= 4 and not (wa in vocab and wb in vocab) and one_edit(wa, wb)) \
                    or root(wa) == root(wb):
                cont_a.remove(i)
                cont_b.remove(j)
                rename[b.norms[j]] = a.norms[i]
                break
    light = lexicon().light_long
    for x, xs in ((a, cont_a), (b, cont_b)):  # "breif", "thnaks": a typo of a light word is light
        for i in list(xs):
            w = x.words[i]
            if vocab and len(w) >= 4 and w not in vocab and any(one_edit(w, v) for v in light if abs(len(v) - len(w)) <= 1):
                xs.remove(i)
    return cont_a, cont_b


def _forgive_synonyms(a: Shape, b: Shape, cont_a: list[int], cont_b: list[int],
                      rename: dict[str, str]) -> tuple[list[int], list[int]]:
    """Drop leftovers that are synonyms of a leftover of the other prompt ("gift" / "present"), or of one of
    its light words ("fast" / "quick"), and quoted words the other prompt has unquoted."""
    for i in list(cont_a):
        wa = a.words[i]
        for j in cont_b:
            wb = b.words[j]
            if same_meaning(wa, wb) or _unquoted(wa) == wb or _unquoted(wb) == wa:
                cont_a.remove(i)
                cont_b.remove(j)
                rename[b.norms[j]] = a.norms[i]
                break
    for x, y, xs in ((a, b, cont_a), (b, a, cont_b)):
        light_y = [w for w, k in zip(y.words, y.kinds) if k == LIGHT]
        for i in list(xs):
            if any(same_meaning(x.words[i], w) for w in light_y):
                xs.remove(i)
                rename.setdefault("~" + x.words[i], "")
    return cont_a, cont_b


def _unquoted(word: str) -> str | None:
    """The word of a quoted single word ("q:amortization" -> "amortization"), else None."""
    return word[2:] if word.startswith("q:") and "_" not in word else None
