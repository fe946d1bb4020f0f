"""Content policy: refuse prompts that contain a banned word or match a banned pattern (403 policy_violation).

Rules come from ``BANNED_WORDS``-style settings: plain words/phrases match case-insensitively on word
boundaries (``secret`` matches "Secret!" but not "secretary"); a rule starting with ``re:`` is a Python
regular expression, used as written (add ``(?i)`` for case-insensitive). All rules are compiled into one
alternation, so a clean prompt costs one regex scan per text however many rules there are; only when it
matches do the rules run one by one to name the one that fired. The error names the rule, never the
prompt's text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from lib.errors import PolicyViolation

_LEADING_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")
# Rules that cannot sit inside a shared alternation: backreferences count groups from the start of the
# whole pattern, and two rules may name a group alike. Those few are checked on their own.
_NOT_COMBINABLE = re.compile(r"\\[1-9]|\(\?P[<=]|\\g<")


def _trie_pattern(words: list[str]) -> str:
    """One regex matching exactly ``words``, shaped as a trie (``cat|car`` → ``ca(?:r|t)``)."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, dict]) -> str:
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


class Policy:
    """A compiled set of banned words and patterns. ``Policy([])`` allows everything.

    Raises ``ValueError`` naming the rule when a ``re:`` rule is not a valid regular expression.
    """

    def __init__(self, patterns: list[str]) -> None:
        self.rules: list[str] = [p.strip() for p in patterns if p and p.strip()]
        self._compiled: list[re.Pattern[str]] = []
        combinable: list[str] = []
        words: list[str] = []
        self._separate: list[int] = []
        for index, rule in enumerate(self.rules):
            source = self._source(index, rule)
            try:
                self._compiled.append(re.compile(source))
            except re.error as exc:
                raise ValueError(f"policy rule #{index + 1} ({rule!r}) is not a valid regular expression: {exc}")
            if not rule.startswith("re:"):
                words.append(rule.lower())
            elif _NOT_COMBINABLE.search(source):
                self._separate.append(index)
            else:
                combinable.append(f"(?:{source})")
        if words:
            # All words as one trie-shaped alternation: a position that starts no word fails on its first char.
            combinable.insert(0, rf"(?<!\w)(?i:{_trie_pattern(words)})(?!\w)")
        self._combined = re.compile("|".join(combinable)) if combinable else None
        self._separate_set = frozenset(self._separate)

    @staticmethod
    def _source(index: int, rule: str) -> str:
        if rule.startswith("re:"):
            body = rule[3:]
            if not body:
                raise ValueError(f"policy rule #{index + 1} is an empty regular expression")
            # "(?i)foo" → "(?i:foo)": a global flag is only legal at the very start of the whole pattern.
            m = _LEADING_FLAGS.match(body)
            return f"(?{m.group(1)}:{body[m.end():]})" if m else body
        # Lookarounds instead of \b, so words that start or end with punctuation ("c++", ".env") work too.
        return rf"(?i:(?<!\w){re.escape(rule)}(?!\w))"

    @classmethod
    def from_sources(cls, env_value: str | None, file_path: str | None) -> "Policy":
        """Rules from a comma-separated environment value and/or a file (one rule per line, ``#`` comments,
        blank lines ignored), env rules first. A regex containing a comma must come from the file.

        Returns the ``Policy``. Raises ``ValueError`` for a bad rule or an unreadable file.
        """
        rules = [part for part in (env_value or "").split(",") if part.strip()]
        if file_path:
            try:
                text = Path(file_path).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"cannot read the banned-words file {file_path}: {exc.strerror or exc}") from exc
            rules += [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        return cls(rules)

    def __len__(self) -> int:
        return len(self.rules)

    def describe(self, index: int) -> str:
        """How the error names rule ``index`` (0-based): ``banned word rule #2 ("secret-project")``."""
        rule = self.rules[index]
        if rule.startswith("re:"):
            return f"banned pattern rule #{index + 1} ({rule})"
        return f'banned word rule #{index + 1} ("{rule}")'

    def first_match(self, text: str) -> int | None:
        """0-based index of a rule ``text`` breaks, or ``None``: the rule matching at the earliest position
        (ties go to the lower rule number); rules kept out of the combined pattern are tried after it."""
        hit = self._combined.search(text) if self._combined is not None else None
        if hit is not None:
            for index, pattern in enumerate(self._compiled):  # only those that can match where the hit is
                if index not in self._separate_set and pattern.match(text, hit.start()):
                    return index
        for index in self._separate:
            if self._compiled[index].search(text):
                return index
        return None

    def check(self, texts: Iterable[str]) -> None:
        """Return ``None`` when no text breaks a rule; raise ``PolicyViolation`` (403 policy_violation) naming the
        first rule broken otherwise. The message never contains the text itself. Non-strings are skipped.
        """
        if not self.rules:
            return
        for text in texts:
            if not isinstance(text, str) or not text:
                continue
            index = self.first_match(text)
            if index is not None:
                raise PolicyViolation(
                    f"The request was blocked by the gateway's content policy: it matches {self.describe(index)}.")
