"""The safety settings the PaLM-era methods take, checked as Google states them.

The text service supports the six PaLM categories (``HARM_CATEGORY_DEROGATORY`` … ``HARM_CATEGORY_DANGEROUS``,
proto numbers 1–6); generateAnswer the four Gemini ones (harassment, hate speech, sexually explicit, dangerous
content). At most one setting per category. localgem rates no content, so nothing is ever filtered: a valid
setting changes nothing, and responses carry no ``filters`` / ``safetyFeedback``, as Google's when nothing was
blocked."""

from __future__ import annotations

from localgem import errors
from localgem.types.enums import ANSWER_HARM_CATEGORIES as ANSWER_CATEGORIES
from localgem.types.enums import PALM_HARM_CATEGORIES as TEXT_CATEGORIES
from localgem.types.generation import SafetySetting

__all__ = ["ANSWER_CATEGORIES", "TEXT_CATEGORIES", "check_safety_settings"]


def check_safety_settings(settings: list[SafetySetting] | None, supported: tuple[str, ...], method: str) -> None:
    seen: set[str] = set()
    for i, setting in enumerate(settings or []):
        where = f"safety_settings[{i}]"
        if setting.category is None or setting.threshold is None:
            raise errors.invalid_field(where, f"{where}: a safety setting needs both category and threshold.")
        if setting.category not in supported:
            raise errors.invalid_field(
                f"{where}.category",
                f"{setting.category} is not supported by {method}; the supported categories are "
                f"{', '.join(supported)}.",
            )
        if setting.category in seen:
            raise errors.invalid_field(
                f"{where}.category", f"There should not be more than one safety setting for {setting.category}."
            )
        seen.add(setting.category)
