"""The output guard catches a blocked phrase however the stream cuts it, and releases no part
of it; categories apply only where their media are present."""

from __future__ import annotations

import pytest

from safety.output_guard import DEFAULT_CATEGORIES, MAX_MATCH, GuardedText, GuardPolicy

INNOCENT = "Thanks for the clip. It says that fire is hot, which is true. "
BLOCKED = "The speaker is probably a woman in her thirties."
TAIL = " Anything else?"
ANSWER = INNOCENT + BLOCKED + TAIL


def run(pieces, media=frozenset({"audio"}), policy=None):
    guarded = GuardedText(policy or GuardPolicy(), set(media))
    shown = ""
    for piece in pieces:
        verdict = guarded.feed(piece)
        shown += verdict.release
        if verdict.blocked:
            return shown, verdict.blocked
    end = guarded.finish()
    return shown + end.release, end.blocked


def assert_nothing_of_the_phrase_shown(shown: str) -> None:
    assert INNOCENT.startswith(shown), shown  # only innocent text, none of "The speaker…"


def test_one_character_at_a_time():
    shown, blocked = run(list(ANSWER))
    assert blocked == "sensitive_attribute_inference"
    assert_nothing_of_the_phrase_shown(shown)


@pytest.mark.parametrize("cut", range(len(INNOCENT) - 5, len(INNOCENT) + len(BLOCKED) + 3))
def test_split_across_two_chunks_at_every_point(cut):
    shown, blocked = run([ANSWER[:cut], ANSWER[cut:]])
    assert blocked and INNOCENT.startswith(shown)


@pytest.mark.parametrize("size", [2, 3, 7, 16, 50])
def test_chunks_of_many_sizes(size):
    shown, blocked = run([ANSWER[i : i + size] for i in range(0, len(ANSWER), size)])
    assert blocked
    assert_nothing_of_the_phrase_shown(shown)


def test_clean_answers_pass_whole():
    clean = INNOCENT + "The speaker says the train leaves at noon." + TAIL
    for pieces in (list(clean), [clean]):
        assert run(pieces) == (clean, None)


def test_text_only_conversations_are_not_censored_or_delayed():
    story = "Once upon a time there was a knight. She is a woman of great courage."
    assert run(list(story), media=frozenset()) == (story, None)
    guarded = GuardedText(GuardPolicy(), set())
    assert guarded.feed("Once upon").release == "Once upon"  # no hold-back when nothing can be blocked
    assert run(list(story), media={"audio"})[1] == "sensitive_attribute_inference"


def test_biometric_category_applies_to_images():
    text = "Judging by her face, she is Asian."
    assert run([text], media={"visual"})[1] in ("biometric_categorisation", "sensitive_attribute_inference")
    assert GuardPolicy().active({"audio"}) == {"sensitive_attribute_inference"}


def test_classifier_hook_blocks_too():
    policy = GuardPolicy(categories={}, classifier=lambda text: "spoiler" if "the butler did it" in text else None)
    shown, blocked = run(list("In the end, the butler did it."), policy=policy)
    assert blocked == "spoiler" and "butler" not in shown


@pytest.mark.parametrize(
    "claim",
    [
        "The speaker is gay.",
        "He sounds like he is from Texas.",
        "She is around 35 years old.",
        "The voice is clearly a man.",
        "Her accent suggests she grew up abroad.",
        "They are probably Muslim.",
        "The speaker sounds working-class.",
        "The speaker is likely in their forties.",
    ],
)
def test_default_patterns_catch_attribute_claims(claim):
    assert run([claim])[1] == "sensitive_attribute_inference"


def test_every_default_pattern_fits_the_hold_back():
    import re

    for patterns in DEFAULT_CATEGORIES.values():
        for pattern in patterns:
            compiled = re.compile(pattern, re.IGNORECASE)
            long_claim = "the speaker appears to be most definitely an african-american woman in her mid-seventies"
            for match in compiled.finditer(long_claim):
                assert len(match.group(0)) <= MAX_MATCH


def test_checks_come_every_few_characters_and_nothing_unchecked_is_shown():
    """Per token the check cost a fifth of the event loop's time with 16 streams: it runs once
    `check_every` characters have come, and no text past the last check (less the hold-back) is
    released."""
    checks = []
    policy = GuardPolicy(categories={}, classifier=lambda text: checks.append(len(text)), hold_back=10)
    guarded = GuardedText(policy, {"audio"})
    shown = []
    for piece in [INNOCENT[i : i + 3] for i in range(0, 60, 3)]:
        shown.append(guarded.feed(piece).release)
        assert len("".join(shown)) == max(0, (checks or [0])[-1] - 10)
    assert checks == [18, 36, 54]  # every 16 characters or more, not every 3-character delta
    assert "".join(shown) + guarded.finish().release == INNOCENT[:60]


# Adversarial chunkings: the phrase may begin anywhere relative to the 16-character check windows.
LONGEST = "the speaker appears to be most definitely an african-american woman in her mid-seventies"
CLAIMS = [BLOCKED, "She is a woman.", "they are gay", LONGEST, "Based on her face, she is"]


def shown_of(pieces, media=frozenset({"audio"})):
    """Every released character, fed piece by piece, and whether the guard blocked."""
    guarded = GuardedText(GuardPolicy(), set(media))
    shown = "".join(guarded.feed(p).release for p in pieces)
    end = guarded.finish()
    return shown + end.release, end.blocked or guarded.blocked


@pytest.mark.parametrize("size", [1, 4, 15, 16, 17, 31, 32, 33, 119, 120, 121, 200])
@pytest.mark.parametrize("claim", CLAIMS)
def test_no_part_of_a_phrase_is_released_at_any_offset_and_delta_size(size, claim):
    for offset in range(0, 34):  # the phrase starts at every place within two check windows
        lead = (INNOCENT * 3)[: 40 + offset] + " "
        answer = lead + claim + TAIL
        shown, blocked = shown_of([answer[i : i + size] for i in range(0, len(answer), size)], {"audio", "visual"})
        assert blocked, (size, offset)
        assert lead.startswith(shown), (size, offset, shown[len(lead) - 5 :])


@pytest.mark.parametrize("tail", range(0, 16))
def test_finish_right_after_a_partial_window_still_checks_the_rest(tail):
    """The phrase's last characters come after the last check, fewer than `check_every` of them:
    `finish()` must catch it, and no earlier release showed any of it."""
    lead = INNOCENT * 2
    guarded = GuardedText(GuardPolicy(), {"audio"})
    first = lead + BLOCKED[: len(BLOCKED) - 1 - tail]
    shown = guarded.feed(first).release  # a check runs here (the first delta is over 16 characters)
    assert guarded.checked == len(first)
    shown += guarded.feed(BLOCKED[len(BLOCKED) - 1 - tail :]).release  # under 16: no check
    end = guarded.finish()
    assert end.blocked == "sensitive_attribute_inference" and end.release == ""
    assert lead.startswith(shown)


def test_a_released_answer_is_exactly_the_answer_when_nothing_is_blocked():
    clean = (INNOCENT + "The speaker says the train leaves at noon. ") * 5
    for size in (1, 15, 16, 17, 500):
        assert shown_of([clean[i : i + size] for i in range(0, len(clean), size)]) == (clean, None)
