"""Structural comparison of two prompts: which words of one have no counterpart in the other, and whether
the words they share play the same roles.

A sentence embedding is a bag of meaning: "is Lisbon west of Madrid" and "is Madrid west of Lisbon" get the
same vector, and so do "summarize this email in one sentence" and "... in one paragraph" over a long pasted
email. This module compares what the embedding averages away:

1. **Alignment.** Each word is light (articles, politeness, pronouns, the generic ways of asking: dropped),
   neutral (a preposition a rewording may add, drop or swap within its class: "to" / "into"), polar ("not",
   "without", "only", "before": never an unexplained difference, though one of its class may stand in for
   it) or content (everything else: stemmed, number words as digits, a short quoted string as one token,
   synonym groups of the guards' lexicon). The content words of the two prompts are matched as multisets;
   a leftover word of one prompt matches a leftover of the other when it is a typo of it (one edit apart,
   and at least one of the two is not a word the model's tokenizer knows whole: "remvoe" / "remove", but
   not "form" / "from"), a derivation ("difference" / "differ"), or when two adjacent words of one spell it
   ("drop down" / "dropdown"). What remains are the *unexplained* words of each prompt, and the number of
   places (runs of adjacent words) they occupy.
2. **Roles.** When nothing is unexplained, the words of the instructions (outside shared pasted text) must
   keep their roles. A word's role is the chain of markers before it in its clause ("from", "to", "of",
   "than to", "if", "while"...). Three signs of a swap: a word moved from one marker to another ("from X"
   / "to X"); two words exchanged markers ("Lisbon west of Madrid" / "Madrid west of Lisbon"); two words
   changed order around a word that stays between them in both ("Acme sued Globex" / "Globex sued Acme");
   and one person as subject in one prompt and object in the other ("we owe them" / "they owe us"). A
   clause moved as a whole ("In Excel, how do I ..." / "How do I ... in Excel") shows none of these.

Pure Python, no state; the word classes are read once, on first use, from
``lib/data/guards/function_words.txt``, and the tokenizer vocabulary from the installed model (without it,
typos are simply not forgiven).
"""

from lib.cache.structure.align import Difference, compare
from lib.cache.structure.roles import instruction, pasted, roles_swapped
from lib.cache.structure.words import CONTENT, LIGHT, NEUTRAL, POLAR, Shape, asked, lexicon, root, shape

__all__ = ["CONTENT", "LIGHT", "NEUTRAL", "POLAR", "Difference", "Shape", "asked", "compare", "instruction", "lexicon",
           "pasted", "roles_swapped", "root", "shape"]
