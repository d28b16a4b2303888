"""A Live session's microphone: realtime PCM in → speech detected (Silero VAD), transcribed while the
user talks (a window of speech is transcribed at each pause, so at the end only the tail is left), and
handed to the session as utterances.

Google's automaticActivityDetection settings map onto the detector: startOfSpeechSensitivity and
prefixPaddingMs decide how much speech starts an utterance, endOfSpeechSensitivity and
silenceDurationMs how much silence ends it. With detection disabled, activityStart/activityEnd do."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from localgem import errors
from localgem.live import wire
from localgem.speech.hearing import Hearing

if TYPE_CHECKING:
    from localgem.engines.speech.audio import Resampler
    from localgem.engines.speech.vad import VoiceActivity

log = logging.getLogger(__name__)

RATE = 16000
FRAME = 512  # 32 ms: Silero's window
FRAME_MS = FRAME * 1000 // RATE
#: Speech before the detected start is kept, so the first syllable is not cut.
PREROLL_FRAMES = 10
#: A window is transcribed ahead once this much speech waits and the user pauses for PAUSE_FRAMES.
WINDOW_SECONDS = 3.0
PAUSE_FRAMES = 5
#: Speech with no pause this long is transcribed anyway, so an endless talker holds bounded audio.
LONGEST_WINDOW_FRAMES = 30 * RATE // FRAME
_NOTHING = np.zeros(0, dtype=np.float32)
_PCM = re.compile(r"^audio/(pcm|l16)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Detection:
    start_threshold: float
    start_frames: int
    end_threshold: float
    end_frames: int


def detection(config: wire.AutomaticActivityDetection | None) -> Detection:
    config = config or wire.AutomaticActivityDetection()
    low_start = config.start_of_speech_sensitivity == "START_SENSITIVITY_LOW"
    low_end = config.end_of_speech_sensitivity == "END_SENSITIVITY_LOW"
    padding = config.prefix_padding_ms if config.prefix_padding_ms is not None else (200 if low_start else 64)
    silence = config.silence_duration_ms if config.silence_duration_ms is not None else (1000 if low_end else 480)
    if padding < 0 or silence < 0:
        raise errors.invalid_field(
            "setup.realtime_input_config.automatic_activity_detection",
            "prefixPaddingMs and silenceDurationMs must not be negative.",
        )
    return Detection(
        start_threshold=0.7 if low_start else 0.5,
        start_frames=max(1, math.ceil(padding / FRAME_MS)),
        end_threshold=0.2 if low_end else 0.35,
        end_frames=max(1, math.ceil(silence / FRAME_MS)),
    )


def pcm_rate(blob: wire.Blob, where: str) -> int:
    """realtimeInput audio is 16-bit little-endian PCM at any rate (16 kHz when unsaid): its rate."""
    from localgem.engines.speech.audio import AudioError
    from localgem.engines.speech.audio import pcm_rate as declared_rate

    mime = blob.mime_type or "audio/pcm;rate=16000"
    if not _PCM.match(mime):
        raise errors.invalid_field(
            f"{where}.mime_type", f"Realtime audio is raw 16-bit PCM (audio/pcm;rate=16000), not {mime!r}."
        )
    try:
        return declared_rate(mime, high=48000)
    except AudioError as exc:
        raise errors.invalid_field(f"{where}.mime_type", f"{where}.mime_type: {exc}.") from None


def load_detector() -> None:
    from localgem.engines.speech.vad import load

    load()


class Listener:
    """``started()``: speech began (barge-in); ``heard(text)``: a piece of transcript (inputTranscription);
    ``said(text)``: a whole utterance, to answer."""

    def __init__(
        self,
        hearing: Hearing,
        detect: Detection | None,  # None: activityStart/activityEnd mark speech
        *,
        started: Callable[[], Awaitable[None]],
        heard: Callable[[str], Awaitable[None]],
        said: Callable[[str], Awaitable[None]],
        failed: Callable[[errors.ApiError], None],
    ) -> None:
        self._hearing = hearing
        self._detect = detect
        self._started, self._heard, self._said, self._failed = started, heard, said, failed
        self._vad: VoiceActivity | None = None  # built in a worker thread on first audio
        self._resampler: tuple[int, Resampler] | None = None  # one per stream: no seams between messages
        self._pending = np.zeros(0, dtype=np.float32)  # samples not yet in a whole frame
        self._preroll: list[np.ndarray] = []
        self._speech: list[np.ndarray] | None = None  # the utterance's frames, while the user talks
        self._committed = 0  # frames of the utterance already sent to be transcribed
        self._pieces: list[asyncio.Future[str]] = []  # the utterance's windows, transcribing in order
        self._run = 0  # consecutive frames over the start threshold (idle) or under the end one (talking)
        self._tentative: asyncio.Future[str] | None = None  # transcribed ahead at a pause
        self._chain: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def talking(self) -> bool:
        return self._speech is not None

    async def push_pcm(self, data: bytes, rate: int) -> None:
        """Raw 16-bit little-endian PCM at ``rate``, as realtimeInput carries it."""
        from localgem.engines.speech.audio import Resampler, pcm16

        data = data[: len(data) - len(data) % 2]
        if rate != RATE:
            if self._resampler is None or self._resampler[0] != rate:
                self._resampler = (rate, Resampler(rate, RATE))
            data = self._resampler[1].push(np.frombuffer(data, dtype="<i2"))
        await self.push(pcm16(data))

    async def push(self, samples: np.ndarray) -> None:
        """float32 samples at 16 kHz."""
        if self._vad is None:
            from localgem.engines.speech.vad import VoiceActivity

            self._vad = await asyncio.to_thread(VoiceActivity)
        self._pending = np.concatenate([self._pending, samples])
        whole = self._pending.size // FRAME * FRAME
        frames, self._pending = self._pending[:whole], self._pending[whole:]
        if not frames.size:
            return
        probabilities = await asyncio.to_thread(self._vad.push, frames)
        for i, p in enumerate(probabilities):
            await self._frame(frames[i * FRAME : (i + 1) * FRAME], p)

    async def _frame(self, frame: np.ndarray, p: float) -> None:
        detect = self._detect
        if self._speech is None:
            self._preroll = (self._preroll + [frame])[-PREROLL_FRAMES:]
            if detect is None:
                return
            self._run = self._run + 1 if p >= detect.start_threshold else 0
            if self._run >= detect.start_frames:
                await self.start()
            return
        self._speech.append(frame)
        quiet = p < (detect.end_threshold if detect is not None else 0.35)
        self._run = self._run + 1 if quiet else 0
        if not quiet:
            self._tentative = None  # the user went on: what was heard ahead is not the end
        if detect is not None and self._run >= detect.end_frames:
            await self.end()
        elif len(self._speech) - self._committed >= LONGEST_WINDOW_FRAMES:
            self._transcribe_window(len(self._speech))
        elif self._run == PAUSE_FRAMES:
            if (len(self._speech) - self._committed) * FRAME >= WINDOW_SECONDS * RATE:
                self._transcribe_window(len(self._speech))
            else:
                # Maybe the end: transcribe ahead, so that if the silence lasts, the transcript is ready.
                self._tentative = self._transcribe_window(len(self._speech), tentative=True)

    async def start(self) -> None:
        """Speech begins (detected, or activityStart)."""
        if self._speech is not None:
            return
        self._speech, self._preroll = list(self._preroll), []
        self._committed, self._pieces, self._run, self._tentative = 0, [], 0, None
        await self._started()

    async def end(self, typed: str = "") -> None:
        """Speech ends (detected, activityEnd or audioStreamEnd): the rest is transcribed, the utterance said
        (after ``typed``: text sent in the same activity)."""
        if self._speech is None:
            return
        if self._pending.size:
            self._speech.append(self._pending)
            self._pending = np.zeros(0, dtype=np.float32)
        tentative = self._tentative
        if tentative is not None:  # only silence since: the transcript made ahead is the rest
            self._pieces.append(tentative)
        else:
            self._transcribe_window(len(self._speech))
        pieces, self._speech, self._run, self._tentative = self._pieces, None, 0, None
        self._preroll = []
        ahead = tentative is not None
        self._follow(lambda: self._utterance(pieces, last_announced=not ahead, typed=typed))

    def _transcribe_window(self, upto: int, *, tentative: bool = False) -> asyncio.Future[str] | None:
        """Transcribe the utterance's frames from the last window to ``upto``, in order with the rest. A
        tentative window is not committed: it counts only if the utterance ends right after it."""
        assert self._speech is not None
        samples = np.concatenate(self._speech[self._committed : upto]) if upto > self._committed else None
        if samples is None:
            return None
        piece: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if not tentative:
            self._speech[self._committed : upto] = [_NOTHING] * (upto - self._committed)  # sent: let it go
            self._committed = upto
            self._pieces.append(piece)
        self._follow(lambda: self._window(samples, piece, announce=not tentative))
        return piece

    async def _window(self, samples: np.ndarray, piece: asyncio.Future[str], announce: bool) -> None:
        try:
            transcriber = await self._hearing.transcriber()
            text = (await transcriber.thread.run(transcriber.transcribe, samples)).text
        except BaseException:
            piece.set_result("")
            raise
        piece.set_result(text)
        if text and announce:
            await self._heard(text)

    async def _utterance(self, pieces: list[asyncio.Future[str]], last_announced: bool, typed: str) -> None:
        texts = [await piece for piece in pieces]
        if not last_announced and texts and texts[-1]:
            await self._heard(texts[-1])
        text = " ".join(t for t in [typed, *texts] if t).strip()
        if text:
            await self._said(text)

    def _follow(self, work: Callable[[], Awaitable[None]]) -> None:
        """Runs ``work`` after everything queued before it: transcripts and utterances keep their order,
        and the receive loop never waits for Whisper."""
        previous = self._chain

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except errors.ApiError as exc:
                self._failed(exc)
            except Exception:
                log.exception("Live speech recognition failed")
                self._failed(errors.Internal("Speech recognition failed."))

        self._chain = asyncio.get_running_loop().create_task(run())
        self._tasks.add(self._chain)
        self._chain.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
