"""lib.policy: banned words (case-insensitive, whole words) and ``re:`` patterns; the error names the rule,
never the prompt."""

from __future__ import annotations

import time

import pytest

from lib.errors import PolicyViolation
from lib.policy import Policy


def violation(policy: Policy, *texts: str) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as info:
        policy.check(texts)
    return info.value


def test_words_match_case_insensitively_on_word_boundaries():
    policy = Policy(["password", "secret-project"])
    for text in ("my PASSWORD is", "Password!", "(password)", "it's the Secret-Project."):
        violation(policy, text)
    for text in ("passwords", "mypassword", "top-secret-projects", "secret project", ""):
        policy.check([text])


def test_error_names_the_rule_and_never_echoes_the_prompt():
    policy = Policy(["alpha", "secret-project"])
    err = violation(policy, "harmless", "tell me about SECRET-PROJECT launch codes 1234")
    assert (err.status, err.type, err.code) == (403, "permission_error", "policy_violation")
    assert 'banned word rule #2 ("secret-project")' in err.message
    assert "launch" not in err.message and "1234" not in err.message and "SECRET" not in err.message


def test_regex_rules_and_their_flags():
    policy = Policy([r"re:\b\d{3}-\d{2}-\d{4}\b", "re:(?i)api[_-]?key", "re:CaseSensitive"])
    err = violation(policy, "my ssn is 123-45-6789")
    assert r"banned pattern rule #1 (re:\b\d{3}-\d{2}-\d{4}\b)" in err.message
    assert "#2" in violation(policy, "here is my API-KEY").message
    assert "#3" in violation(policy, "CaseSensitive").message
    policy.check(["casesensitive", "123-456-789"])


def test_the_earliest_match_is_reported_ties_to_the_lower_rule():
    policy = Policy(["zeta", "re:alpha|zeta"])
    assert "#1" in violation(policy, "zeta").message
    assert "#2" in violation(policy, "alpha").message
    assert "#2" in violation(policy, "alpha then zeta").message


def test_rules_that_cannot_share_the_combined_pattern_still_work():
    # A backreference and two same-named groups would break one big alternation; they are checked alone.
    policy = Policy([r"re:(\w+) \1", r"re:(?P<x>ab)(?P=x)", r"re:(?P<x>cd)(?P=x)", "plain"])
    assert "#1" in violation(policy, "hello hello").message
    assert "#2" in violation(policy, "abab").message
    assert "#3" in violation(policy, "cdcd").message
    assert "#4" in violation(policy, "plain").message
    policy.check(["hello world", "abcd", "cdab"])


def test_words_with_punctuation_at_the_edges():
    policy = Policy(["c++", ".env"])
    violation(policy, "I write C++ daily")
    violation(policy, "cat .env")
    policy.check(["abc++", "c++x", "my.envoy", "x.env"])


def test_bad_regex_names_the_rule():
    with pytest.raises(ValueError, match=r"rule #2 .*not a valid regular expression"):
        Policy(["fine", "re:(unclosed"])
    with pytest.raises(ValueError, match="rule #1 is an empty"):
        Policy(["re:"])


def test_from_sources_env_and_file(tmp_path):
    path = tmp_path / "banned.txt"
    path.write_text("# one rule per line\n\nre:forbidden,\\s*list\n  spaced word  \n#commented\n", encoding="utf-8")
    policy = Policy.from_sources(" alpha , ,beta", str(path))
    assert policy.rules == ["alpha", "beta", r"re:forbidden,\s*list", "spaced word"]
    assert "#3" in violation(policy, "a forbidden,   list").message
    assert "#4" in violation(policy, "a SPACED WORD here").message
    assert len(Policy.from_sources(None, None)) == 0
    with pytest.raises(ValueError, match="cannot read the banned-words file"):
        Policy.from_sources(None, str(tmp_path / "missing.txt"))


def test_empty_policy_and_non_strings():
    Policy([]).check(["anything at all"])
    Policy(["x"]).check([None, 3, ""])  # type: ignore[list-item]


def test_many_rules_scan_fast():
    policy = Policy([f"word{i}" for i in range(500)] + [rf"re:pat{i}\d+" for i in range(100)])
    text = "lorem ipsum dolor sit amet " * 4000  # ~108 KB, clean
    start = time.perf_counter()
    policy.check([text])
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, elapsed  # one combined scan: ~20 ms here
    assert "#501" in violation(policy, text + " pat0123").message
