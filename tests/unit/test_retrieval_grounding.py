"""groundingSupports: answer sentences matched to the passages that back them, in bytes."""

from __future__ import annotations

from localgem.retrieval.grounding import sentences, supports

PASSAGES = [
    "The dragon Smaug guarded the treasure of the Lonely Mountain for many years.",
    "Bilbo Baggins lived in a hobbit-hole at Bag End, under the Hill.",
    "Smaug was killed by Bard the Bowman, who shot him with the black arrow.",
]


def test_each_backed_sentence_points_at_its_passages_in_bytes() -> None:
    answer = "Smaug guarded the Lonely Mountain’s treasure. Bard killed Smaug with the black arrow! It was cold."
    found = supports(answer, PASSAGES)
    assert [s.chunk_indices for s in found] == [(0,), (2,)]  # the last sentence is backed by nothing
    encoded = answer.encode()
    for support in found:
        assert encoded[support.start : support.end].decode() == support.text
        assert all(0.5 <= c <= 1 for c in support.confidences)
    assert found[1].start > len(answer[: answer.index("Bard")])  # the ’ before it takes 3 bytes


def test_sentences_keep_their_own_text() -> None:
    text = "First one. Second one?\nThird line without a stop\n\n  Fourth (v1.2 is fine)."
    assert [text[a:b] for a, b in sentences(text)] == [
        "First one.",
        "Second one?",
        "Third line without a stop",
        "Fourth (v1.2 is fine).",
    ]


def test_nothing_backs_an_answer_about_something_else() -> None:
    assert supports("Paris is the capital of France.", PASSAGES) == []
    assert supports("", PASSAGES) == [] and supports("Smaug guarded treasure.", []) == []
