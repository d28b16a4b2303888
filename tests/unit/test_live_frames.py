"""Live video frames: one a second is kept, the latest eight go with the next turn, others are refused."""

from __future__ import annotations

import pytest

from localgem import errors
from localgem.live.watching import MAX_FRAMES, Frames
from localgem.types.content import Blob


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def frame(n: int) -> Blob:
    return Blob(mime_type="image/jpeg", data=bytes([n]))


def test_one_frame_a_second_the_newest_of_each_second() -> None:
    clock = Clock()
    frames = Frames(sees=True, clock=clock)
    for n, at in enumerate([0.0, 0.5, 0.9, 1.2, 2.5]):
        clock.now = at
        frames.add(frame(n), "realtime_input.video")
    assert [p.inline_data.data for p in frames.take()] == [bytes([2]), bytes([3]), bytes([4])]
    assert frames.take() == []


def test_only_the_latest_frames_go_with_a_turn() -> None:
    clock = Clock()
    frames = Frames(sees=True, clock=clock)
    for n in range(MAX_FRAMES + 3):
        clock.now = float(n)
        frames.add(frame(n), "realtime_input.video")
    assert [p.inline_data.data[0] for p in frames.take()] == list(range(3, MAX_FRAMES + 3))


@pytest.mark.parametrize(
    ("sees", "blob", "said"),
    [
        (False, frame(1), "has no vision"),
        (True, Blob(mime_type="video/mp4", data=b"x"), "a video frame is an image"),
        (True, Blob(mime_type="image/png", data=b""), "a video frame is an image"),
    ],
)
def test_frames_that_cannot_be_seen_are_refused(sees: bool, blob: Blob, said: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=said):
        Frames(sees=sees).add(blob, "realtime_input.video")
