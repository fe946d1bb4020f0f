"""One test per guard rule (lib/cache/guards/rules.py): the rule fires on the difference it is for, and stays
quiet on a rewording that keeps it. Also: the lexicon comes from lib/data/guards/ and is read once.

Examples are written for these tests and are not taken from the labelled pair sets.
"""

from __future__ import annotations

import builtins

import pytest

from lib.cache.guards import analyze, check_pair, lexicon, rules


def fires(rule, a: str, b: str) -> bool:
    fa, fb = analyze(a), analyze(b)
    result = rule(fa, fb)
    assert rule(fb, fa) == result  # every rule is symmetric
    return result


def test_quoted_text_differs() -> None:
    assert fires(rules.quoted_text_differs, "Explain `ls -la`", "Explain `ls -lh`")
    assert not fires(rules.quoted_text_differs, "Explain `ls -la`", "What does `ls -la` do?")


def test_numbers_differ() -> None:
    assert fires(rules.numbers_differ, "Book a table for 4 at 7pm", "Book a table for 4 at 8pm")
    assert not fires(rules.numbers_differ, "Book a table for four at 7pm", "Reserve a table for 4 people, 19:00")


def test_direction_swapped() -> None:
    assert fires(rules.direction_swapped, "Convert 5 litres to gallons", "Convert 5 gallons to litres")
    assert fires(rules.direction_swapped, "Move the call from Monday to Friday", "Move the call from Friday to Monday")
    assert not fires(rules.direction_swapped, "Convert 5 litres to gallons", "How many gallons is 5 litres?")


def test_convertible_terms_differ() -> None:
    assert fires(rules.convertible_terms_differ, "Translate the menu into Dutch", "Translate the menu into Danish")
    assert not fires(rules.convertible_terms_differ, "Translate the menu into Dutch", "Put the menu in Dutch")


def test_negation_differs() -> None:
    assert fires(rules.negation_differs, "Which invoices were paid?", "Which invoices were not paid?")
    assert not fires(rules.negation_differs, "Which fields are not valid?", "Which fields are invalid?")


def test_negation_moved() -> None:
    assert fires(rules.negation_moved, "Keep the logo but not the slogan", "Keep the slogan but not the logo")
    assert not fires(rules.negation_moved, "Don't include the logo", "Do not include the logo")


def test_antonyms_used() -> None:
    assert fires(rules.antonyms_used, "Sort prices in ascending order", "Sort prices in descending order")
    assert not fires(rules.antonyms_used, "Sort prices in ascending order", "Sort the prices ascending")


def test_prefix_negation() -> None:
    assert fires(rules.prefix_negation, "How do I archive a channel?", "How do I unarchive a channel?")
    assert not fires(rules.prefix_negation, "How do I archive a channel?", "How can I archive a channel?")
    assert not fires(rules.prefix_negation, "Which rows are not archived?", "Which rows are unarchived?")


def test_closed_set_member_differs() -> None:
    assert fires(rules.closed_set_member_differs, "Send the report every Monday", "Send the report every Tuesday")
    assert not fires(rules.closed_set_member_differs, "Send the report every Monday", "Every Monday, send the report")


def test_proper_nouns_differ() -> None:
    assert fires(rules.proper_nouns_differ, "Draft a welcome note for the Berlin office",
                 "Draft a welcome note for the Vienna office")
    assert not fires(rules.proper_nouns_differ, "Draft a welcome note for the Berlin office",
                     "Write a welcome message for our Berlin office")


def test_tasks_disjoint() -> None:
    assert fires(rules.tasks_disjoint, "Summarize the meeting notes", "Translate the meeting notes")
    assert not fires(rules.tasks_disjoint, "Summarize the meeting notes", "Give me a recap of the meeting notes")


def test_single_word_swapped() -> None:
    assert fires(rules.single_word_swapped, "How do I merge two PDF files?", "How do I split two PDF files?")
    assert not fires(rules.single_word_swapped, "How do I delete a Slack channel?", "How do I remove a Slack channel?")


_POLICY = ("Travel policy: employees book economy class for flights under six hours, business class above that "
           "with director approval; hotels up to the city cap; meals reimbursed against receipts within thirty days.")


def test_shared_text_finds_the_payload() -> None:
    shared = rules.shared_text(analyze("Summarize this policy: " + _POLICY), analyze(_POLICY + " Translate it."))
    assert shared is not None
    (words_a, in_a), (words_b, in_b) = shared
    assert len(in_a) >= 30 and len(in_b) >= 30
    assert rules.shared_text(analyze("Summarize the policy"), analyze("Translate the policy")) is None


def test_instruction_tasks_differ() -> None:
    shared = rules.shared_text(analyze("Summarize this policy: " + _POLICY), analyze("Translate this policy: " + _POLICY))
    assert shared is not None and rules.instruction_tasks_differ(*shared)
    same = rules.shared_text(analyze("Summarize this policy: " + _POLICY), analyze("Give a summary of this policy: " + _POLICY))
    assert same is not None and not rules.instruction_tasks_differ(*same)


def test_instruction_details_differ() -> None:
    shared = rules.shared_text(analyze("Summarize this policy for managers: " + _POLICY),
                               analyze("Summarize this policy for interns: " + _POLICY))
    assert shared is not None and rules.instruction_details_differ(*shared)
    same = rules.shared_text(analyze("Summarize this policy for managers: " + _POLICY),
                             analyze("Please summarize the following policy for managers: " + _POLICY))
    assert same is not None and not rules.instruction_details_differ(*same)


def test_every_rule_has_a_test_here() -> None:
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")}
    for _, rule in rules.RULES + rules.SHORT_RULES + rules.PAYLOAD_RULES:
        assert rule.__name__ in tested, rule.__name__


def test_lexicon_comes_from_data_files_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert lexicon.DATA_DIR.parts[-2:] == ("data", "guards")
    assert "french" in lexicon.TERMS and "not" in lexicon.NEGATORS and lexicon.ANTONYM_GROUPS
    assert lexicon.read_sections("stopwords.txt")[""]  # the file itself, not a literal in code

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("the guards opened a file while checking a pair")

    monkeypatch.setattr(builtins, "open", no_open)
    assert check_pair("Convert 3 miles to km", "Convert 3 km to miles") == "direction swapped"
