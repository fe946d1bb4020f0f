"""Guards for semantic cache hits: cheap lexical rules that veto a match the embedding cannot tell apart.

A sentence embedding scores "convert 10 miles to km" and "convert 10 km to miles" as near-identical, and a
long pasted email dominates the vector so that "summarize: <email>" and "reply to: <email>" look the same.
Each rule below looks for one kind of difference that changes the answer while barely moving the vector:

    quoted text differs   a quoted/backticked string of one prompt is absent from the other
    numbers differ        the sets of numbers, times, dates and codes (A1, Q3, INV-2043) differ
    direction swapped     the same languages/units/formats/currencies/time zones with source and target
                          exchanged, or "from X to Y" against "from Y to X"
    negation              one prompt negates (not, without, never, exclude...) and the other does not, or
                          negates what the other asks for, or uses the antonym (approve/reject, pros/cons)
    terms differ          a different member of a closed set (target language, format, weekday, period),
                          a different proper noun or acronym, or a single content word swapped for a
                          non-synonym ("merge" vs "concatenate")
    instruction differs   the prompts share a long pasted text and the instructions around it ask for
                          different tasks

The rules are deliberately one-sided: a refused hit costs one upstream call, a wrong hit serves a wrong
answer. ``check_pair`` is pure Python with no state; ``analyze`` lets a caller keep the features of a
cached prompt and compare them many times with ``check_features``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Callable


# ----------------------------------------------------------------------------------------- tokenizing
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|->|→|[.!?;:,()\n]")
_RAW_WORD_RE = re.compile(r"[a-z0-9]+")
_SENTENCE_BREAK = {".", "!", "?", ";", ":", "\n", "("}
_CAP_RE = re.compile(r"(?<![\w'])([A-Z][A-Za-z]*[A-Z][A-Za-z]*|[A-Z][a-z]+)(?:'s)?(?![\w'])|([.!?:;\n(\"'`])")


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')


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


def _tokens(lower: str) -> list[str]:
    for key, pattern, repl in PHRASES:
        if key in lower:
            lower = pattern.sub(repl, lower)
    out = []
    for t in _TOKEN_RE.findall(lower):
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


def _squash(text: str) -> str:
    return " ".join(text.casefold().split())


def _quotes(text: str) -> tuple[str, ...]:
    found = []
    for pattern in _QUOTE_RES:
        for m in pattern.finditer(text):
            q = _squash(m.group(1)).strip(" .,!?;:")
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


def _numbers(text: str, tokens: list[str]) -> frozenset[str]:
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
    found.update(_number_words(tokens))
    return frozenset(found)


def _number_words(tokens: list[str]) -> set[str]:
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


# ----------------------------------------------------------------------------------------- features
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
    norm = _normalize(text)
    lower = norm.lower()
    tokens = _tokens(lower)
    words = [t for t in tokens if t[0].isalnum()]
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
    negated, has_neg = _negation(tokens, st)
    return Features(
        text=norm,
        squashed=_squash(norm),
        tokens=tuple(tokens),
        words=frozenset(words),
        stems=frozenset(stems_list),
        content=content,
        numbers=_numbers(norm, words),
        quotes=_quotes(norm),
        proper=_proper_nouns(norm, st),
        raw_stems=frozenset(st(w) for w in _RAW_WORD_RE.findall(lower)),
        negated=negated,
        has_negation=has_neg,
        groups=_groups(words, st),
        roles=_roles(tokens),
        edges=_edges(tokens, st),
        tasks=_tasks(words, st),
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


def _negation(tokens: list[str], st: Callable[[str], str]) -> tuple[frozenset[str], bool]:
    """Stems in the scope of a negation (the next few content words), and whether there is any negation."""
    negated: set[str] = set()
    found = False
    for i, t in enumerate(tokens):
        start = i + 1
        if t.startswith("non") and len(t) >= 7 and t not in NOT_NON_PREFIXED:  # non-empty, nonprofit
            found = True
            negated.add(st(t[3:]))
            continue
        marker = t in NEGATORS or t.endswith("n't")
        if not marker and t in NEGATOR_BIGRAM_HEADS and i + 1 < len(tokens):
            marker = (t, tokens[i + 1]) in NEGATOR_BIGRAMS
            start = i + 2
        if not marker:
            continue
        found = True
        taken = 0
        for u in tokens[start : start + 8]:
            if u in _SENTENCE_BREAK or u in (",", "but", "and", "or", "->", "→") or taken == 4:
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


def _roles(tokens: list[str]) -> dict[str, tuple[frozenset[str], frozenset[str], frozenset[str]]]:
    """For each kind of convertible term (language, unit, format...): which are sources, targets, mentions."""
    found: list[tuple[int, str, str]] = []  # (index, kind, canonical)
    i, n = 0, len(tokens)
    while i < n:
        two = tokens[i] + " " + tokens[i + 1] if i + 1 < n else ""
        if two in TERMS:
            found.append((i, *TERMS[two]))
            i += 2
            continue
        t = tokens[i]
        if t in TERMS:
            found.append((i, *TERMS[t]))
        elif t in NUMBER_UNITS and i > 0 and tokens[i - 1][0].isdigit():
            found.append((i, *NUMBER_UNITS[t]))
        i += 1
    roles: dict[str, tuple[set[str], set[str], set[str]]] = {}
    for idx, kind, canon in found:
        role = _role_at(tokens, idx, kind)
        if role == "mention" and tokens[idx] in AMBIGUOUS_TERMS:
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


def _role_at(tokens: list[str], idx: int, kind: str) -> str:
    """"src", "tgt" or "mention" for the term at ``idx``, from the words around it (from/to/into/in/as)."""
    j = idx - 1
    while j >= 0 and (tokens[j] in ROLE_SKIP_BEFORE or tokens[j][0].isdigit()):
        j -= 1
    before = tokens[j] if j >= 0 else ""
    if before == "from":
        return "src"
    if before in ("to", "into", "->", "→", "as") or (before == "in" and kind != "time"):
        return "tgt"
    if before == "many" or (tokens[idx - 1 : idx] == ["the"] and tokens[idx + 1 : idx + 2] in (["for"], ["word"])):
        return "tgt"
    k = idx + 1
    while k < len(tokens) and tokens[k] in ROLE_SKIP_AFTER:
        k += 1
    after = tokens[k] if k < len(tokens) else ""
    if after in ("to", "into", "->", "→"):
        return "src"
    return "mention"


def _edges(tokens: list[str], st: Callable[[str], str]) -> frozenset[tuple[str, str]]:
    """Generic directed pairs: "from X ... to Y" and "<convert verb> X to Y" (stems of X and Y)."""
    edges = set()
    for i, t in enumerate(tokens):
        if t not in ("to", "into", "->", "→") or i == 0 or i + 1 >= len(tokens):
            continue
        left = [u for u in tokens[max(0, i - 4) : i] if u[0].isalnum()]
        if not left:
            continue
        window = tokens[max(0, i - 6) : i]
        if "from" not in window and not any(u in CONVERT_VERBS for u in window):
            continue
        right = next((u for u in tokens[i + 1 : i + 4] if u[0].isalnum() and u not in STOPWORDS), None)
        x = next((u for u in reversed(left) if u not in STOPWORDS and not u[0].isdigit()), None)
        if x and right:
            edges.add((st(x), st(right)))
    return frozenset(edges)


def _tasks(words: list[str], st: Callable[[str], str] = stem, outside: set[int] | None = None) -> frozenset[str]:
    """The tasks the words ask for; a synonym of a task word counts as that task ("turn into" = convert).

    With ``outside``, words at those positions (pasted text) are skipped, though a two-word task phrase may
    end inside it ("write unit | tests for this function: ...").
    """
    tasks = set()
    for i, w in enumerate(words):
        if outside and i in outside:
            continue
        s = st(w)
        task = TASK_WORDS.get(w) or TASK_STEMS.get(s) or TASK_STEMS.get(SYNONYM_INDEX.get(s, s))
        if task:
            tasks.add(task)
        if i + 1 < len(words):
            task = TASK_BIGRAMS.get((w, words[i + 1]))
            if task:
                tasks.add(task)
    return frozenset(tasks)


def _task_phrase_words(words: list[str], outside: set[int]) -> set[int]:
    """Positions of words in a task phrase ("unit tests", "action items"): not details of their own."""
    out = set()
    for i in range(len(words) - 1):
        if i not in outside and (words[i], words[i + 1]) in TASK_BIGRAMS:
            out.update((i, i + 1))
    return out


# ------------------------------------------------------------------------------------------- checks
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
    for mine, other in ((a, b), (b, a)):
        for q in mine.quotes:
            if q not in other.squashed:
                return "quoted text differs"
    if a.numbers != b.numbers:
        return "numbers differ"
    reason = _check_direction(a, b)
    if reason:
        return reason
    reason = _check_negation(a, b)
    if reason:
        return reason
    reason = _check_terms(a, b)
    if reason:
        return reason
    shared = _shared_text(a, b)
    if shared is None:
        return _check_short(a, b)
    return _check_instruction(*shared)


def _check_direction(a: Features, b: Features) -> str | None:
    for kind in set(a.roles) & set(b.roles):
        sa, ta, _ = a.roles[kind]
        sb, tb, _ = b.roles[kind]
        if (sa & tb) or (ta & sb):
            return "direction swapped"
    if any((y, x) in b.edges for (x, y) in a.edges if x != y):
        return "direction swapped"
    for kind in set(a.roles) & set(b.roles):
        sa, ta, ma = a.roles[kind]
        sb, tb, mb = b.roles[kind]
        if (ta and tb and ta != tb) or (sa and sb and sa != sb):
            return "terms differ"
        if kind in STRICT_KINDS:
            all_a, all_b = sa | ta | ma, sb | tb | mb
            if (all_a - all_b) and (all_b - all_a):
                return "terms differ"
    return None


def _check_negation(a: Features, b: Features) -> str | None:
    if a.has_negation != b.has_negation:
        neg, other = (a, b) if a.has_negation else (b, a)
        # "not eligible" against "ineligible": the other prompt negates the same word with a prefix
        prefixed = {item[4:] for item in other.groups.get(-1, ()) if item.startswith("neg:")}
        if not (neg.negated & prefixed):
            return "negation"
    elif a.has_negation:
        # both negate, but each negates something the other asserts: the negation moved
        plain_a = a.stems - a.negated
        plain_b = b.stems - b.negated
        if ((a.negated - b.negated) & plain_b) and ((b.negated - a.negated) & plain_a):
            return "negation"
    # antonyms: one prompt has one side of a pair (and not the other), the other prompt the reverse
    for gid in ANTONYM_GROUPS:
        ga, gb = a.groups.get(gid), b.groups.get(gid)
        if ga and gb and (ga - gb) and (gb - ga):
            return "negation"
    # "unlock" against "lock" (but not against "not locked", which says the same)
    for x, y in ((a, b), (b, a)):
        px, py = x.groups.get(-1, frozenset()), y.groups.get(-1, frozenset())
        for item in px:
            if item.startswith("neg:"):
                base = item[4:]
                if "pos:" + base in py and item not in py and "pos:" + base not in px and base not in y.negated:
                    return "negation"
    return None


def _check_terms(a: Features, b: Features) -> str | None:
    for gid in set(a.groups) & set(b.groups):
        if gid < 0 or gid in ANTONYM_GROUPS:
            continue
        ga, gb = a.groups[gid], b.groups[gid]
        if (ga - gb) and (gb - ga):
            return "terms differ"
    if (a.proper - b.raw_stems) and (b.proper - a.raw_stems):
        return "terms differ"
    return None


def _check_short(a: Features, b: Features) -> str | None:
    """Rules for prompts without shared pasted text: the task, and single-word substitutions."""
    if a.tasks and b.tasks and a.tasks.isdisjoint(b.tasks):
        return "instruction differs"
    # the same content words except one, swapped for a word that is not a synonym: "merge" vs "concatenate"
    # (a longer rewording is the embedding's business; names, products and languages have their own rules)
    ops = [op for op in SequenceMatcher(None, a.content, b.content, autojunk=False).get_opcodes() if op[0] != "equal"]
    if len(ops) == 1 and ops[0][0] == "replace":
        _, i1, i2, j1, j2 = ops[0]
        old, new = a.content[i1:i2], b.content[j1:j2]
        if len(old) == 1 and len(new) == 1 and not (_meanings(old) & _meanings(new)):
            return "terms differ"
    return None


def _meanings(words: tuple[str, ...] | set[str]) -> set[str]:
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


_PAYLOAD_MIN_RUN = 6  # shared runs at least this long count as pasted text, not wording
_PAYLOAD_MIN_TOKENS = 8
_PAYLOAD_MIN_SHARE = 0.5


_Residual = tuple[list[str], set[int]]  # a prompt's words, and the positions that are pasted text


def _shared_text(a: Features, b: Features) -> tuple[_Residual, _Residual] | None:
    """When most of both prompts is the same pasted text, return each prompt's words and the positions of
    the pasted text in them; else None."""
    ta = [t for t in a.tokens if t[0].isalnum()]
    tb = [t for t in b.tokens if t[0].isalnum()]
    if min(len(ta), len(tb)) < _PAYLOAD_MIN_TOKENS:
        return None
    blocks = [blk for blk in SequenceMatcher(None, ta, tb, autojunk=False).get_matching_blocks()
              if blk.size >= _PAYLOAD_MIN_RUN]
    shared = sum(blk.size for blk in blocks)
    if shared < _PAYLOAD_MIN_TOKENS or shared < _PAYLOAD_MIN_SHARE * min(len(ta), len(tb)):
        return None
    in_a: set[int] = set()
    in_b: set[int] = set()
    for blk in blocks:
        in_a.update(range(blk.a, blk.a + blk.size))
        in_b.update(range(blk.b, blk.b + blk.size))
    return (ta, in_a), (tb, in_b)


def _check_instruction(res_a: _Residual, res_b: _Residual) -> str | None:
    """Both prompts carry the same pasted text: the words around it must ask for the same task.

    The embedding says nothing here (the pasted text dominates it), so this is strict: the same set of
    tasks, and no detail on each side that the other lacks ("for the CEO" vs "for engineers").
    """
    (ta, in_a), (tb, in_b) = res_a, res_b
    if _tasks(ta, outside=in_a) != _tasks(tb, outside=in_b):
        return "instruction differs"
    skip_a, skip_b = _task_phrase_words(ta, in_a), _task_phrase_words(tb, in_b)
    words_a = {stem(w) for i, w in enumerate(ta)
               if i not in in_a and i not in skip_a and w not in STOPWORDS and w not in TASK_WORDS}
    words_b = {stem(w) for i, w in enumerate(tb)
               if i not in in_b and i not in skip_b and w not in STOPWORDS and w not in TASK_WORDS}
    extra_a = {w for w in words_a - words_b if w not in INSTRUCTION_GENERIC and not w[0].isdigit()}
    extra_b = {w for w in words_b - words_a if w not in INSTRUCTION_GENERIC and not w[0].isdigit()}
    if extra_a and extra_b and not (_meanings(extra_a) & _meanings(extra_b)):
        return "instruction differs"
    return None


# ========================================================================================== lexicon
# Word lists the rules use. Plain data, built once at import; each list is a general vocabulary of the
# domain (languages, units, antonyms...), not phrases from any test set.

def _forms(spec: str) -> list[list[str]]:
    """``"a b | c d"`` -> ``[["a", "b"], ["c", "d"]]``: members separated by ``|``, forms by spaces."""
    return [member.split() for member in spec.split("|")]


# (literal that must occur, pattern, replacement): the literal skips patterns that cannot match cheaply.
_PHRASES = (
    ("dr", r"\btl;?dr\b", "tldr"), ("c#", r"\bc#", "csharp"), ("c++", r"\bc\+\+", "cpp"), ("f#", r"\bf#", "fsharp"),
    (".net", r"\.net\b", " dotnet"), ("node", r"\bnode\.?js\b", "nodejs"), ("objective-c", r"\bobjective-c\b", "objc"),
    ("e-mail", r"\be-mail", "email"), ("log", r"\blogg(?:ed|ing) (?:in|on)\b", "login"),
    ("log", r"\blog[ -]?(?:in|on)s?\b", "login"), ("log", r"\blogg(?:ed|ing) out\b", "logout"),
    ("log", r"\blog[ -]?outs?\b", "logout"), ("sign", r"\bsign[ -]?ins?\b", "signin"),
    ("sign", r"\bsign[ -]?outs?\b", "signout"), ("sign", r"\bsign[ -]?ups?\b", "signup"),
    ("front", r"\bfront[ -]end\b", "frontend"), ("back", r"\bback[ -]end\b", "backend"),
    ("stack", r"\bfull[ -]stack\b", "fullstack"), ("time", r"\bfull[ -]time\b", "fulltime"),
    ("time", r"\bpart[ -]time\b", "parttime"), ("site", r"\bon[ -]site\b", "onsite"),
    ("office", r"\bin[ -]office\b", "inoffice"), ("non", r"\bnon[ -](?=[a-z])", "non"),
    ("tax", r"\bpre[ -]tax\b", "pretax"), ("tax", r"\bpost[ -]tax\b", "posttax"),
    ("due", r"\bpast[ -]due\b", "overdue"), ("down", r"\bdrop[ -]down", "dropdown"), ("pop", r"\bpop[ -]up", "popup"),
    ("case", r"\bsnake[_ -]?case\b", "snakecase"), ("case", r"\bcamel[ -]?case\b", "camelcase"),
    ("case", r"\bkebab[ -]?case\b", "kebabcase"), ("case", r"\bpascal[ -]?case\b", "pascalcase"),
    ("case", r"\btitle case\b", "titlecase"), ("case", r"\bupper[ -]?case\b", "uppercase"),
    ("case", r"\blower[ -]?case\b", "lowercase"), ("to-do", r"\bto-do\b", "todo"),
    (".", r"\b(e\.g|i\.e|a\.m|p\.m|u\.s)\.", lambda m: m.group(1).replace(".", "")),
    ("google", r"\bgoogle (sheet|doc|drive|cloud|meet|form)s?\b", lambda m: "google" + m.group(1)),
    ("microsoft", r"\b(?:microsoft|ms) (excel|word|teams|outlook)\b", lambda m: m.group(1)),
    ("power", r"\bpower ?bi\b", "powerbi"), ("azure", r"\bazure (?:ad|active directory)\b", "azuread"),
    ("entra", r"\bentra id\b", "azuread"),
    ("$", r"\$", " usd "), ("€", r"€", " eur "), ("£", r"£", " gbp "), ("¥", r"¥", " jpy "), ("&", r"&", " and "),
)
PHRASES = tuple((key, re.compile(pattern), repl) for key, pattern, repl in _PHRASES)

STOPWORDS = frozenset("""
a an the this that these those it its it's i i'm me my mine we us our ours you your yours he him his she her
they them their theirs what which who whom whose why how when where there here is are was were be been being
am do does did doing done have has had having can could would should will shall may might must of in on at by
for with about as into onto to from up out over than then so such too very just also only again further once
and or but if because while until both each few other some any all own same more most s t let let's please
pls kindly hi hello hey thanks thank give get got want wanted like need tell me way
something anything someone anyone thing things yet now still really quite
""".split())

ORDINALS = {w: i for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split(), start=1)}
SECOND_UNIT_BEFORE = frozenset("a per each every one half split".split())
ONE_PRONOUN_BEFORE = frozenset("the this that which each every no any some another on little".split())
ONE_PRONOUN_AFTER = frozenset("of another or on by off".split())
CARDINALS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
CARDINALS.update({w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)})
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000, "dozen": 12}
MULTIPLICATIVES = {"twice": 2, "thrice": 3}
NUMBER_WORDS = frozenset(ORDINALS) | frozenset(CARDINALS) | frozenset(SCALES) | frozenset(MULTIPLICATIVES)

CAPITALISED_COMMON = frozenset("i ok okay hi hello thanks dear regards re fyi pls please tldr".split())

NEGATORS = frozenset("""
not no never none nothing nobody nowhere neither nor without cannot cant dont doesnt didnt isnt arent wasnt
werent wont wouldnt shouldnt couldnt havent hasnt hadnt aint except excluding exclude excludes excluded omit
omits omitted omitting avoid avoids avoiding skip skipping unless lacking
""".split())
NEGATOR_BIGRAMS = frozenset({("leave", "out"), ("leaving", "out"), ("left", "out"), ("other", "than"),
                             ("instead", "of"), ("rather", "than"), ("apart", "from"), ("free", "of")})
NOT_NON_PREFIXED = frozenset("nonetheless nonce nonsense".split())
NEGATOR_BIGRAM_HEADS = frozenset(h for h, _ in NEGATOR_BIGRAMS)

# Pairs (or small sets) of opposites. A hit is refused when one prompt uses only one side and the other
# prompt only the other side.
_ANTONYMS = [
    "include includes included including inclusive | exclude excludes excluded excluding exclusive",
    "add adds added adding insert inserting | remove removes removed removing delete deletes deleted deleting drop",
    "increase increases increased increasing raise raising grow growing boost | decrease decreases decreased "
    "decreasing reduce reduces reduced reducing lower lowering cut",
    "enable enables enabled enabling | disable disables disabled disabling",
    "allow allows allowed allowing permit permitted | deny denies denied block blocks blocked forbid prohibit",
    "approve approves approved approving approval accept accepts accepted accepting acceptance grant granted | "
    "reject rejects rejected rejecting rejection decline declines declined declining refuse refused refusal",
    "ascending asc | descending desc",
    "more | less fewer",
    "higher high | lower low",
    "max maximum maximize maximise highest largest biggest most greatest best | min minimum minimize minimise "
    "lowest smallest least fewest worst",
    "top | bottom",
    "first earliest initial | last final latest",
    "oldest | newest latest",
    "previous prior last | next upcoming",
    "before | after",
    "above | below",
    "over | under",
    "overpaid overestimate overestimated overbudget overperform overperforming overstaffed | underpaid "
    "underestimate underestimated underbudget underperform underperforming understaffed",
    "inside | outside",
    "internal | external",
    "inbound incoming | outbound outgoing",
    "import imports imported importing | export exports exported exporting",
    "upload uploads uploaded uploading | download downloads downloaded downloading",
    "input inputs | output outputs",
    "positive | negative",
    "pro pros advantage advantages benefit benefits upside upsides strength strengths | con cons disadvantage "
    "disadvantages drawback drawbacks downside downsides weakness weaknesses",
    "buy buys bought buying buyer | sell sells sold selling seller",
    "revenue revenues income | expense expenses cost costs spend spending",
    "profit profits gain gains | loss losses",
    "asset assets | liability liabilities",
    "payable payables | receivable receivables",
    "credit credits credited | debit debits debited",
    "deposit deposits deposited | withdraw withdraws withdrawal withdrawn",
    "hire hires hired hiring onboard onboarding | fire fired firing terminate terminated termination dismiss "
    "dismissed layoff layoffs offboard offboarding",
    "start starts started starting begin beginning | end ends ended ending stop stops stopped finish",
    "open opens opened opening | close closes closed closing",
    "send sends sent sending | receive receives received receiving",
    "encrypt encrypts encrypted encrypting encryption | decrypt decrypts decrypted decrypting decryption",
    "encode encodes encoded encoding | decode decodes decoded decoding",
    "compress compresses compressed compressing compression | decompress decompressed extract",
    "serialize serialise serialization | deserialize deserialise deserialization",
    "uppercase | lowercase",
    "formal | informal casual",
    "short shorter shorten brief concise condense | long longer lengthen lengthy detailed expand elaborate "
    "comprehensive thorough",
    "simple simpler simplify | complex complicated",
    "true | false",
    "success successful succeed succeeds succeeded pass passes passed passing | failure fail fails failed "
    "failing unsuccessful",
    "win wins won winning | lose loses lost losing",
    "rise rises rising | fall falls falling",
    "frontend | backend",
    "login signin | logout signout",
    "upgrade upgrades upgraded upgrading | downgrade downgrades downgraded downgrading",
    "online | offline",
    "public | private",
    "show shows shown showing unhide unhides reveal | hide hides hiding",
    "visible | invisible hidden",
    "employer employers | employee employees",
    "supplier suppliers vendor vendors seller | customer customers client clients buyer",
    "similar similarity similarities | different difference differences",
    "gross | net",
    "pretax | posttax",
    "horizontal horizontally | vertical vertically",
]
# Closed sets: two prompts naming different members ask different things ("weekly" vs "monthly").
_CLOSED_SETS = [
    "monday mondays | tuesday tuesdays | wednesday wednesdays | thursday thursdays | friday fridays | "
    "saturday saturdays | sunday sundays",
    "january jan | february feb | march | april apr | june jun | july jul | august aug | september sep sept | "
    "october oct | november nov | december dec",
    "hourly | daily | weekly | biweekly fortnightly | monthly | quarterly | annual annually yearly | semiannual",
    "sales | marketing | finance | hr | engineering | legal | procurement | accounting",
    "intern interns internship | junior | senior",
    "windows | mac macos osx | linux ubuntu | ios iphone | android",
    "excel | outlook | gmail | slack | zoom | jira | confluence | asana | trello | notion | salesforce | hubspot | "
    "zendesk | freshdesk | intercom | quickbooks | xero | sap | netsuite | workday | shopify | stripe | paypal | "
    "googlesheet | googledoc | googledrive | googlemeet | googleform | azuread | "
    "aws | azure | gcp googlecloud | github | gitlab | bitbucket | docker | kubernetes | postgres postgresql | mysql | sqlite | "
    "mongodb | snowflake | bigquery | tableau | powerbi | looker | linkedin | twitter | facebook | instagram | "
    "tiktok | youtube | okta | teams",
    "fulltime | parttime | contractor contract freelance freelancer | temporary temp | permanent",
    "remote remotely | onsite inoffice | hybrid",
    "upcoming planned scheduled | completed finished | cancelled canceled | pending | overdue",
    "row rows | column columns",
    "sum total totals | average averages mean avg | median | count counts",
]

GROUP_INDEX: dict[str, list[tuple[int, str]]] = {}
ANTONYM_GROUPS: frozenset[int] = frozenset(range(len(_ANTONYMS)))
for _gid, _spec in enumerate(_ANTONYMS + _CLOSED_SETS):
    for _member in _forms(_spec):
        for _form in _member:
            GROUP_INDEX.setdefault(_form, []).append((_gid, _member[0]))
GROUP_STEM_INDEX: dict[str, list[tuple[int, str]]] = {}
for _form, _entries in GROUP_INDEX.items():
    GROUP_STEM_INDEX.setdefault(stem(_form), []).extend(_entries)
IN_PREFIX_BASE_ENDINGS = ("able", "ible", "al", "ive", "ent", "ant", "ete", "ect", "id", "ular", "ure", "ate")

# Convertible terms: (kind, canonical). Direction matters between terms of one kind.
_TERM_SPECS = {
    "lang": "english | german | french | spanish castilian | italian | portuguese | dutch flemish | polish | "
            "czech | japanese | korean | chinese mandarin | cantonese | russian | arabic | hindi | turkish | "
            "swedish | danish | norwegian | finnish | greek | hebrew | ukrainian | romanian | hungarian | "
            "vietnamese | thai | indonesian | malay | tagalog filipino | bengali | urdu | persian farsi | catalan | "
            "croatian | serbian | slovak | slovenian | bulgarian | lithuanian | latvian | estonian | icelandic",
    "code": "python | javascript js | typescript | java | kotlin | scala | csharp | cpp | fsharp | golang go | "
            "rust | ruby | php | swift | perl | haskell | elixir | dart | lua | matlab | julia | bash shell | "
            "powershell | vba | sql | dotnet | nodejs | objc",
    "format": "json | yaml yml | xml | csv | tsv | pdf | docx word_doc | markdown | html | txt plain_text | xlsx xls | "
              "png | jpg jpeg | svg | parquet | toml | latex | rtf",
    "case": "camelcase | snakecase | kebabcase | pascalcase | titlecase | uppercase | lowercase",
    "dateformat": "iso_format | us_format | european_format",
    "currency": "usd dollar dollars us_dollars us_dollar | eur euro euros | gbp sterling pounds_sterling "
                "british_pounds | jpy yen | chf swiss_francs | cad canadian_dollars | aud australian_dollars | "
                "inr rupee rupees | cny yuan rmb | sek | nok | dkk | pln zloty | brl reais | mxn | btc bitcoin",
    "tz": "utc | gmt | est edt eastern_time | pst pdt pacific_time | cst cdt central_time | mst mdt "
          "mountain_time | cet cest | ist | jst | aest | bst | local_time",
    "length": "mm millimeter millimeters millimetre millimetres | cm centimeter centimeters centimetre centimetres | "
              "meter meters metre metres | km kilometer kilometers kilometre kilometres | inch inches | "
              "ft foot feet | yard yards yd | mile miles",
    "mass": "mg milligram milligrams | gram grams | kg kilogram kilograms kilo kilos | lb lbs pound pounds | "
            "oz ounce ounces | ton tons tonne tonnes",
    "temp": "celsius centigrade | fahrenheit | kelvin",
    "volume": "ml milliliter milliliters millilitre | liter liters litre litres | gallon gallons gal | "
              "quart quarts | pint pints",
    "data": "bit bits | byte bytes | kb kilobyte kilobytes | mb megabyte megabytes | gb gigabyte gigabytes | "
            "tb terabyte terabytes | pb petabyte petabytes | kib | mib | gib | tib",
    "time": "ms millisecond milliseconds | sec secs seconds | min mins minute minutes | hr hrs hour hours | "
            "day days | week weeks | month months | year years",
}
TERMS: dict[str, tuple[str, str]] = {}
for _kind, _spec in _TERM_SPECS.items():
    for _member in _forms(_spec):
        for _form in _member:
            TERMS[_form.replace("_", " ")] = (_kind, _member[0])
TERMS.update({"word document": ("format", "docx"), "word file": ("format", "docx"), "ms word": ("format", "docx"),
              "microsoft word": ("format", "docx"), "excel file": ("format", "xlsx"),
              "iso 8601": ("dateformat", "iso_format")})
# Terms are compared by the direction rules (by canonical name: "USD" = "US dollars"), not as proper
# nouns; time units excepted, since "HR" is more often human resources than hours.
TERM_WORDS = frozenset(key for key, (kind, _) in TERMS.items() if " " not in key and kind != "time")
# Words that are a term only where a direction marker says so ("polish this email", "go to settings").
AMBIGUOUS_TERMS = frozenset("polish go swift rust word teams dollar min sec day days week weeks month months year "
                            "years ton tons bit bits".split())
NUMBER_UNITS = {"c": ("temp", "celsius"), "f": ("temp", "fahrenheit"), "k": ("temp", "kelvin"),
                "m": ("length", "meter"), "g": ("mass", "gram"), "l": ("volume", "liter"), "h": ("time", "hr")}
STRICT_KINDS = frozenset("lang code format case dateformat currency tz length mass temp volume data".split())
ROLE_SKIP_BEFORE = frozenset("a an the this these that those my our your its plain simple proper degrees degree "
                             "british american brazilian european".split())
ROLE_SKIP_AFTER = frozenset("text texts code file files document documents doc email emails version time format "
                            "data table tables value values amount amounts sentence sentences message messages "
                            "content translation script scripts string strings output snippet language timestamps "
                            "dates date".split())
CONVERT_VERBS = frozenset("convert converts converting converted translate translates translating translated "
                          "change changing move moving migrate migrating switch switching turn turning transfer "
                          "transferring map mapping port porting rewrite transform transforming upgrade downgrade "
                          "shift reassign rename renaming".split())

# What a prompt asks to be done with pasted text. Each word names one task.
_TASKS = {
    "summarize": "summarize summarise summarized summarizing summarising summary summaries tldr recap overview gist",
    "translate": "translate translates translated translating translation",
    "reply": "reply replies respond responds response responses answer",
    "actions": "todo todos",
    "classify": "classify classification categorize categorise category categories triage urgency priority "
                "prioritize label",
    "sentiment": "sentiment positive negative mood",
    "explain": "explain explains explanation describe describes",
    "debug": "bug bugs buggy debug wrong broken",
    "test": "test tests testing pytest unittest",
    "document": "docstring docstrings documentation comment comments",
    "types": "annotations annotate typing",
    "optimize": "optimize optimise optimization optimisation faster speed performance efficient",
    "refactor": "refactor refactoring restructure",
    "security": "security secure vulnerability vulnerabilities injection",
    "proofread": "proofread proofreading grammar spelling typo typos",
    "rewrite": "rewrite rephrase reword paraphrase",
    "shorten": "shorter shorten trim concise condense",
    "lengthen": "longer expand elaborate lengthen",
    "tone": "formal informal casual friendly polite courteous professional tone",
    "inclusive": "inclusive inclusivity bias biased",
    "questions": "questions faq quiz",
    "title": "headline headlines title titles tagline slogan",
    "social": "tweet tweets",
    "chart": "chart charts graph plot visualize visualise visualization",
    "calculate": "calculate calculation compute total sum average",
    "convert": "convert conversion transform",
    "risk": "risk risks concern concerns blocker blockers",
    "owner": "owns owner owners responsible responsibility",
    "errors": "exception exceptions retry retries",
}
TASK_WORDS = {w: task for task, words in _TASKS.items() for w in words.split()}
TASK_BIGRAMS = {("action", "items"): "actions", ("next", "steps"): "actions", ("key", "points"): "summarize",
                ("main", "points"): "summarize", ("what", "does"): "explain", ("release", "notes"): "notes",
                ("error", "handling"): "errors", ("type", "hints"): "types", ("type", "annotations"): "types",
                ("subject", "line"): "title", ("clean", "up"): "refactor", ("unit", "test"): "test",
                ("unit", "tests"): "test", ("test", "case"): "test", ("test", "cases"): "test",
                ("to", "do"): "actions", ("follow", "up"): "actions"}
TASK_STEMS = {stem(w): task for w, task in TASK_WORDS.items()}

# Words a rewording may swap for one another (stems).
_SYNONYMS = [
    "write draft compose create generate produce prepare make craft",
    "remove delete drop erase", "show display list", "explain describe clarify", "fix correct repair resolve",
    "error mistake issue problem bug", "big large huge", "small little tiny", "quick fast rapid",
    "help assist", "use utilize employ", "buy purchase", "start begin", "finish complete",
    "email mail message note", "customer client", "employee staff worker", "company business organization firm",
    "polite courteous", "reply response answer respond", "summary summarize summarise recap overview",
    "find locate identify search", "change modify edit update alter", "check verify validate",
    "calculate compute", "job role position", "posting ad advert listing opening", "sheet spreadsheet worksheet",
    "document doc file", "suggest recommend propose", "idea suggestion", "tip advice", "step instruction",
    "template example sample", "ask request", "meeting call", "boss manager", "salary pay wage",
    "refund reimbursement", "invoice bill", "price cost", "delay late", "overdue late", "convert turn transform",
    "cancel cancellation", "reset reinitialize", "error exception", "function method", "test check",
]
SYNONYM_INDEX: dict[str, str] = {}
for _group in _SYNONYMS:
    _words = _group.split()
    for _w in _words:
        SYNONYM_INDEX.setdefault(stem(_w), stem(_words[0]))

# Words around pasted text that do not change the task ("please give me a quick summary of the following").
INSTRUCTION_GENERIC = frozenset(stem(w) for w in """
this these that the a an following above below text email message note notes please can could would you me
give write draft make create provide for of to based on in here is are what it and quick short brief
briefly some my our your us we i with about from as into all any just one do does did
extract list find identify get pull show return output
query sql code function method class script snippet program letter document report ticket review article
paragraph passage data table policy contract post description notes announcement complaint feedback
""".split())
