"""Token pieces → text: stop sequences, split UTF-8, logprobs alignment."""

from __future__ import annotations

from localgem.engines.base import StepLogprobs, TokenLogprob
from localgem.engines.text import TextAssembler


def step(n: int) -> StepLogprobs:
    return StepLogprobs(TokenLogprob(n, str(n), -float(n)), ())


def feed(assembler: TextAssembler, pieces: list[bytes]) -> tuple[list[str], bool]:
    out, stopped = [], False
    for i, piece in enumerate(pieces):
        released = assembler.push(piece, step(i))
        out.append(released.text)
        if released.stopped:
            return out, True
    out.append(assembler.finish().text)
    return out, stopped


def test_text_flows_through_without_stop_sequences() -> None:
    out, stopped = feed(TextAssembler(), [b"Hello", b",", b" world"])
    assert out == ["Hello", ",", " world", ""] and not stopped


def test_stop_sequence_is_cut_and_not_returned() -> None:
    out, stopped = feed(TextAssembler(("END",)), [b"one ", b"two E", b"N", b"D three"])
    assert "".join(out) == "one two " and stopped


def test_possible_stop_prefix_is_held_then_released_when_it_diverges() -> None:
    assembler = TextAssembler(("STOP",))
    assert assembler.push(b"ab ST").text == "ab "
    assert assembler.push(b"ART").text == "START"


def test_held_prefix_is_released_at_the_end() -> None:
    out, stopped = feed(TextAssembler(("xyz",)), [b"a", b"xy"])
    assert "".join(out) == "axy" and not stopped


def test_utf8_split_across_tokens_is_held_until_complete() -> None:
    euro = "€".encode()
    assembler = TextAssembler()
    assert assembler.push(euro[:1]).text == ""
    assert assembler.push(euro[1:2]).text == ""
    assert assembler.push(euro[2:]).text == "€"


def test_logprobs_travel_with_their_text_and_stop_tokens_are_dropped() -> None:
    assembler = TextAssembler(("!!",))
    first = assembler.push(b"hi", step(0))
    held = assembler.push(b"!", step(1))
    stop = assembler.push(b"!", step(2))
    assert [s.chosen.token_id for s in first.logprobs] == [0]
    assert held.text == "" and held.logprobs == ()
    assert stop.stopped and stop.text == "" and stop.logprobs == ()


def test_stop_in_the_middle_of_a_token_keeps_the_text_before_it() -> None:
    out, stopped = feed(TextAssembler(("\n\n",)), [b"Sure", b".\n\nNext"])
    assert "".join(out) == "Sure." and stopped
