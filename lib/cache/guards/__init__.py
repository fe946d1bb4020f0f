"""Guards for semantic cache hits: cheap lexical rules that veto a match the embedding cannot tell apart.

A sentence embedding scores "convert 10 miles to km" and "convert 10 km to miles" as near-identical, and a
long pasted email dominates the vector so that "summarize: <email>" and "reply to: <email>" look the same.
Each rule looks for one kind of difference that changes the answer while barely moving the vector:

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

Modules: :mod:`.morph` (normalising, stemming), :mod:`.lexicon` (the word lists in ``lib/data/guards/``,
read once at import), :mod:`.text` (tokens, quotes, numbers), :mod:`.features` (:func:`analyze`: one
prompt's :class:`Features`), :mod:`.rules` (one function per rule, and :func:`check_features`).
``check_pair`` is pure Python with no state; ``analyze`` lets a caller keep the features of a cached prompt
and compare them many times with ``check_features``.
"""

from lib.cache.guards.features import Features, analyze
from lib.cache.guards.morph import stem
from lib.cache.guards.rules import check_features, check_pair

__all__ = ["Features", "analyze", "check_features", "check_pair", "stem"]
