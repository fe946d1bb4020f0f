"""The guards' word lists, read once at import from ``lib/data/guards/`` and indexed for the rules.

Each file is plain text: ``[section]`` headers, ``#`` comments, entries separated by spaces or lines (see
each file's header for its format); ``phrases.json`` holds the regular expressions that join multi-word
names before tokenizing ("c++" -> "cpp", "log in" -> "login"). Every list is a general vocabulary of its
domain (languages, units, antonyms...), not phrases from any test set.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from lib.cache.guards.morph import stem

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "guards"


def read_sections(name: str) -> dict[str, list[str]]:
    """The lines of ``lib/data/guards/<name>`` by section (``""`` before the first header), comments dropped."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    with open(DATA_DIR / name, encoding="utf-8") as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
            if not line:
                continue
            if line.startswith("[") and line.endswith("]"):
                current = line[1:-1]
                sections.setdefault(current, [])
                continue
            sections[current].append(line)
    return sections


def _words(lines: list[str]) -> list[str]:
    return [w for line in lines for w in line.split()]


def _mapping(lines: list[str]) -> list[tuple[str, list[str]]]:
    """``left = right words`` lines -> [(left, [right words])]."""
    out = []
    for line in lines:
        left, _, right = line.partition("=")
        out.append((left.strip(), right.split()))
    return out


def forms(spec: str) -> list[list[str]]:
    """``"a b | c d"`` -> ``[["a", "b"], ["c", "d"]]``: members separated by ``|``, forms by spaces."""
    return [member.split() for member in spec.split("|")]


# ------------------------------------------------------------------------------------------ phrases
def _replacement(entry: dict[str, Any]) -> str | Callable[[re.Match[str]], str]:
    template, drop = entry["to"], entry.get("drop")
    if "\\" not in template:
        return template
    if drop:
        return lambda m: m.expand(template).replace(drop, "")
    return lambda m: m.expand(template)


with open(DATA_DIR / "phrases.json", encoding="utf-8") as _f:
    # (literal that must occur, pattern, replacement): the literal skips patterns that cannot match cheaply
    PHRASES = tuple((e["if"], re.compile(e["re"]), _replacement(e)) for e in json.load(_f))

# -------------------------------------------------------------------------------------- plain words
_stop = read_sections("stopwords.txt")
STOPWORDS = frozenset(_words(_stop[""]))
CAPITALISED_COMMON = frozenset(_words(_stop["capitalised_common"]))
# words around pasted text that do not change the task ("please give me a quick summary of the following")
INSTRUCTION_GENERIC = frozenset(stem(w) for w in _words(_stop["instruction_generic"]))

# ------------------------------------------------------------------------------------------ numbers
_num = read_sections("numbers.txt")
ORDINALS = {w: i for i, w in enumerate(_words(_num["ordinals"]), start=1)}
CARDINALS = {w: i for i, w in enumerate(_words(_num["cardinals"]))}
CARDINALS.update({w: 10 * i for i, w in enumerate(_words(_num["tens"]), 2)})
SCALES = {w: int(v[0]) for w, v in _mapping(_num["scales"])}
MULTIPLICATIVES = {w: int(v[0]) for w, v in _mapping(_num["multiplicatives"])}
SECOND_UNIT_BEFORE = frozenset(_words(_num["second_unit_before"]))
ONE_PRONOUN_BEFORE = frozenset(_words(_num["one_pronoun_before"]))
ONE_PRONOUN_AFTER = frozenset(_words(_num["one_pronoun_after"]))
NUMBER_WORDS = frozenset(ORDINALS) | frozenset(CARDINALS) | frozenset(SCALES) | frozenset(MULTIPLICATIVES)

# ----------------------------------------------------------------------------------------- negation
_neg = read_sections("negation.txt")
NEGATORS = frozenset(_words(_neg["negators"]))
NEGATOR_BIGRAMS = frozenset(tuple(line.split()) for line in _neg["bigrams"])
NOT_NON_PREFIXED = frozenset(_words(_neg["not_non_prefixed"]))
NEGATOR_BIGRAM_HEADS = frozenset(h for h, _ in NEGATOR_BIGRAMS)
IN_PREFIX_BASE_ENDINGS = tuple(_words(read_sections("morphology.txt")["in_prefix_base_endings"]))

# ---------------------------------------------------------------------------- antonyms, closed sets
_ANTONYMS = read_sections("antonyms.txt")[""]
_CLOSED_SETS = read_sections("closed_sets.txt")[""]
GROUP_INDEX: dict[str, list[tuple[int, str]]] = {}
ANTONYM_GROUPS: frozenset[int] = frozenset(range(len(_ANTONYMS)))
for _gid, _spec in enumerate(_ANTONYMS + _CLOSED_SETS):
    for _member in forms(_spec):
        for _form in _member:
            GROUP_INDEX.setdefault(_form, []).append((_gid, _member[0]))
GROUP_STEM_INDEX: dict[str, list[tuple[int, str]]] = {}
for _form, _entries in GROUP_INDEX.items():
    GROUP_STEM_INDEX.setdefault(stem(_form), []).extend(_entries)

# ------------------------------------------------------------------------------- convertible terms
_terms = read_sections("terms.txt")
_NOT_KINDS = {"", "phrases", "ambiguous", "number_units", "strict_kinds", "role_skip_before", "role_skip_after",
              "convert_verbs"}
_TERM_KINDS = [k for k in _terms if k not in _NOT_KINDS]  # in file order
# Convertible terms: (kind, canonical). Direction matters between terms of one kind.
TERMS: dict[str, tuple[str, str]] = {}
for _kind in _TERM_KINDS:
    for _line in _terms[_kind]:
        _member = _line.split()
        for _form in _member:
            TERMS[_form.replace("_", " ")] = (_kind, _member[0])
TERMS.update({phrase: (kc[0], kc[1]) for phrase, kc in _mapping(_terms["phrases"])})
# Terms are compared by the direction rules (by canonical name: "USD" = "US dollars"), not as proper
# nouns; time units excepted, since "HR" is more often human resources than hours.
TERM_WORDS = frozenset(key for key, (kind, _) in TERMS.items() if " " not in key and kind != "time")
# Words that are a term only where a direction marker says so ("polish this email", "go to settings").
AMBIGUOUS_TERMS = frozenset(_words(_terms["ambiguous"]))
NUMBER_UNITS = {letter: (kc[0], kc[1]) for letter, kc in _mapping(_terms["number_units"])}
STRICT_KINDS = frozenset(_words(_terms["strict_kinds"]))
ROLE_SKIP_BEFORE = frozenset(_words(_terms["role_skip_before"]))
ROLE_SKIP_AFTER = frozenset(_words(_terms["role_skip_after"]))
CONVERT_VERBS = frozenset(_words(_terms["convert_verbs"]))

# -------------------------------------------------------------------------------------------- tasks
_tasks = read_sections("tasks.txt")
# What a prompt asks to be done with pasted text. Each word names one task.
TASK_WORDS: dict[str, str] = {}
for _line in _tasks[""]:
    _task, _, _names = _line.partition(":")
    for _w in _names.split():
        TASK_WORDS[_w] = _task.strip()
TASK_BIGRAMS = {(left.split()[0], left.split()[1]): right[0] for left, right in _mapping(_tasks["bigrams"])}
TASK_STEMS = {stem(w): task for w, task in TASK_WORDS.items()}

# ----------------------------------------------------------------------------------------- synonyms
# Words a rewording may swap for one another (stems); the first word of a group names it.
SYNONYM_INDEX: dict[str, str] = {}
for _group in read_sections("synonyms.txt")[""]:
    _ws = _group.split()
    for _w in _ws:
        SYNONYM_INDEX.setdefault(stem(_w), stem(_ws[0]))
