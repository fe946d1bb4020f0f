"""What the rules compare: :func:`analyze` turns one prompt into :class:`Features`, once per prompt."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from lib.cache.guards.lexicon import (
    AMBIGUOUS_TERMS,
    CAPITALISED_COMMON,
    CONVERT_VERBS,
    GROUP_INDEX,
    IN_PREFIX_BASE_ENDINGS,
    NEGATOR_BIGRAM_HEADS,
    NEGATOR_BIGRAMS,
    NEGATORS,
    NOT_NON_PREFIXED,
    NUMBER_UNITS,
    NUMBER_WORDS,
    ROLE_SKIP_AFTER,
    ROLE_SKIP_BEFORE,
    STOPWORDS,
    SYNONYM_INDEX,
    TASK_BIGRAMS,
    TASK_STEMS,
    TASK_WORDS,
    TERM_WORDS,
    TERMS,
)
from lib.cache.guards.morph import normalize, squash, stem
from lib.cache.guards.text import RAW_WORD_RE, SENTENCE_BREAK, numbers, quotes, tokens

_CAP_RE = re.compile(r"(?<![\w'])([A-Z][A-Za-z]*[A-Z][A-Za-z]*|[A-Z][a-z]+)(?:'s)?(?![\w'])|([.!?:;\n(\"'`])")


@dataclass(frozen=True)
class Features:
    """What the rules compare, computed once per prompt by :func:`analyze`."""

    text: str
    squashed: str
    tokens: tuple[str, ...]
    words: frozenset[str]
    stems: frozenset[str]
    content: tuple[str, ...]  # content-word stems in order
    numbers: frozenset[str]
    quotes: tuple[str, ...]
    proper: frozenset[str]  # stems of mid-sentence capitalised words and acronyms
    raw_stems: frozenset[str]  # stems of the words as written (before phrases were joined): proper nouns' peers
    negated: frozenset[str]  # content stems inside a negation's scope
    has_negation: bool
    groups: dict[int, frozenset[str]]  # closed-set group id -> members present
    roles: dict[str, tuple[frozenset[str], frozenset[str], frozenset[str]]]  # kind -> (sources, targets, mentions)
    edges: frozenset[tuple[str, str]]  # generic "from x to y" pairs (stems)
    tasks: frozenset[str]


def analyze(text: str) -> Features:
    """Return the :class:`Features` of one prompt (pure function of the text; about 0.05-0.2 ms)."""
    norm = normalize(text)
    lower = norm.lower()
    toks = tokens(lower)
    words = [t for t in toks if t[0].isalnum()]
    memo: dict[str, str] = {}

    def st(word: str) -> str:
        got = memo.get(word)
        if got is None:
            got = memo[word] = stem(word)
        return got

    stems_list = [st(w) for w in words]
    content = tuple(s for w, s in zip(words, stems_list)
                    if w not in STOPWORDS and w not in NEGATORS and w not in NUMBER_WORDS
                    and not w[0].isdigit() and not w.endswith("n't"))
    negated, has_neg = _negation(toks, st)
    return Features(
        text=norm,
        squashed=squash(norm),
        tokens=tuple(toks),
        words=frozenset(words),
        stems=frozenset(stems_list),
        content=content,
        numbers=numbers(norm, words),
        quotes=quotes(norm),
        proper=_proper_nouns(norm, st),
        raw_stems=frozenset(st(w) for w in RAW_WORD_RE.findall(lower)),
        negated=negated,
        has_negation=has_neg,
        groups=_groups(words, st),
        roles=_roles(toks),
        edges=_edges(toks, st),
        tasks=tasks_of(words, st),
    )


def _proper_nouns(text: str, st: Callable[[str], str]) -> frozenset[str]:
    """Stems of capitalised words that do not start a sentence, and of acronyms anywhere."""
    out: set[str] = set()
    at_start = True
    for m in _CAP_RE.finditer(text):
        if m.group(2):
            at_start = True
            continue
        word = m.group(1)
        is_acronym = word.isupper() and len(word) >= 2
        if at_start and not is_acronym:
            at_start = False
            continue
        at_start = False
        low = word.lower()
        # an acronym is kept even when its letters spell a stopword ("US", "IT")
        if (is_acronym or low not in STOPWORDS) and low not in CAPITALISED_COMMON and low not in TERM_WORDS:
            out.add(st(low))
    return frozenset(out)


def _negation(toks: list[str], st: Callable[[str], str]) -> tuple[frozenset[str], bool]:
    """Stems in the scope of a negation (the next few content words), and whether there is any negation."""
    negated: set[str] = set()
    found = False
    for i, t in enumerate(toks):
        start = i + 1
        if t.startswith("non") and len(t) >= 7 and t not in NOT_NON_PREFIXED:  # non-empty, nonprofit
            found = True
            negated.add(st(t[3:]))
            continue
        marker = t in NEGATORS or t.endswith("n't")
        if not marker and t in NEGATOR_BIGRAM_HEADS and i + 1 < len(toks):
            marker = (t, toks[i + 1]) in NEGATOR_BIGRAMS
            start = i + 2
        if not marker:
            continue
        found = True
        taken = 0
        for u in toks[start : start + 8]:
            if u in SENTENCE_BREAK or u in (",", "but", "and", "or", "->", "→") or taken == 4:
                break
            if u[0].isalpha() and u not in STOPWORDS and u not in NEGATORS:
                negated.add(st(u))
                taken += 1
    return frozenset(negated), found


def _groups(words: list[str], st: Callable[[str], str]) -> dict[int, frozenset[str]]:
    """Members of antonym pairs and closed sets present; group -1 holds "pos:"/"neg:" (un-, in-, non-) stems."""
    present: dict[int, set[str]] = {}
    for w in words:
        for gid, member in GROUP_INDEX.get(w, ()):
            present.setdefault(gid, set()).add(member)
        # un-/in-/non- prefixes make antonyms of words the other prompt may use plainly ("lock"/"unlock")
        for prefix in ("un", "non", "in", "im", "ir", "il"):
            if w.startswith(prefix) and len(w) - len(prefix) >= 4:
                base = w[len(prefix):]
                if prefix in ("in", "im", "ir", "il") and not base.endswith(IN_PREFIX_BASE_ENDINGS):
                    continue
                present.setdefault(-1, set()).add("neg:" + st(base))
                break
        else:
            present.setdefault(-1, set()).add("pos:" + st(w))
    return {k: frozenset(v) for k, v in present.items()}


def _roles(toks: list[str]) -> dict[str, tuple[frozenset[str], frozenset[str], frozenset[str]]]:
    """For each kind of convertible term (language, unit, format...): which are sources, targets, mentions."""
    found: list[tuple[int, str, str]] = []  # (index, kind, canonical)
    i, n = 0, len(toks)
    while i < n:
        two = toks[i] + " " + toks[i + 1] if i + 1 < n else ""
        if two in TERMS:
            found.append((i, *TERMS[two]))
            i += 2
            continue
        t = toks[i]
        if t in TERMS:
            found.append((i, *TERMS[t]))
        elif t in NUMBER_UNITS and i > 0 and toks[i - 1][0].isdigit():
            found.append((i, *NUMBER_UNITS[t]))
        i += 1
    roles: dict[str, tuple[set[str], set[str], set[str]]] = {}
    for idx, kind, canon in found:
        role = _role_at(toks, idx, kind)
        if role == "mention" and toks[idx] in AMBIGUOUS_TERMS:
            continue
        src, tgt, men = roles.setdefault(kind, (set(), set(), set()))
        (src if role == "src" else tgt if role == "tgt" else men).add(canon)
    out = {}
    for kind, (src, tgt, men) in roles.items():
        men -= src | tgt
        if tgt and men and not src:  # "how many km is 10 miles", "3 pm eastern in pacific": the rest is the source
            src, men = set(men), set()
        out[kind] = (frozenset(src), frozenset(tgt), frozenset(men))
    return out


def _role_at(toks: list[str], idx: int, kind: str) -> str:
    """"src", "tgt" or "mention" for the term at ``idx``, from the words around it (from/to/into/in/as)."""
    j = idx - 1
    while j >= 0 and (toks[j] in ROLE_SKIP_BEFORE or toks[j][0].isdigit()):
        j -= 1
    before = toks[j] if j >= 0 else ""
    if before == "from":
        return "src"
    if before in ("to", "into", "->", "→", "as") or (before == "in" and kind != "time"):
        return "tgt"
    if before == "many" or (toks[idx - 1 : idx] == ["the"] and toks[idx + 1 : idx + 2] in (["for"], ["word"])):
        return "tgt"
    k = idx + 1
    while k < len(toks) and toks[k] in ROLE_SKIP_AFTER:
        k += 1
    after = toks[k] if k < len(toks) else ""
    if after in ("to", "into", "->", "→"):
        return "src"
    return "mention"


def _edges(toks: list[str], st: Callable[[str], str]) -> frozenset[tuple[str, str]]:
    """Generic directed pairs: "from X ... to Y" and "<convert verb> X to Y" (stems of X and Y)."""
    edges = set()
    for i, t in enumerate(toks):
        if t not in ("to", "into", "->", "→") or i == 0 or i + 1 >= len(toks):
            continue
        left = [u for u in toks[max(0, i - 4) : i] if u[0].isalnum()]
        if not left:
            continue
        window = toks[max(0, i - 6) : i]
        if "from" not in window and not any(u in CONVERT_VERBS for u in window):
            continue
        right = next((u for u in toks[i + 1 : i + 4] if u[0].isalnum() and u not in STOPWORDS), None)
        x = next((u for u in reversed(left) if u not in STOPWORDS and not u[0].isdigit()), None)
        if x and right:
            edges.add((st(x), st(right)))
    return frozenset(edges)


def tasks_of(words: list[str], st: Callable[[str], str] = stem, outside: set[int] | None = None) -> frozenset[str]:
    """The tasks the words ask for; a synonym of a task word counts as that task ("turn into" = convert).

    With ``outside``, words at those positions (pasted text) are skipped, though a two-word task phrase may
    end inside it ("write unit | tests for this function: ...").
    """
    found = set()
    for i, w in enumerate(words):
        if outside and i in outside:
            continue
        s = st(w)
        task = TASK_WORDS.get(w) or TASK_STEMS.get(s) or TASK_STEMS.get(SYNONYM_INDEX.get(s, s))
        if task:
            found.add(task)
        if i + 1 < len(words):
            task = TASK_BIGRAMS.get((w, words[i + 1]))
            if task:
                found.add(task)
    return frozenset(found)


def task_phrase_positions(words: list[str], outside: set[int]) -> set[int]:
    """Positions of words in a task phrase ("unit tests", "action items"): not details of their own."""
    out = set()
    for i in range(len(words) - 1):
        if i not in outside and (words[i], words[i + 1]) in TASK_BIGRAMS:
            out.update((i, i + 1))
    return out
