"""Reading ``predict`` / ``predictLongRunning`` bodies: ``instances`` and ``parameters`` are free-form JSON on the
wire (google.protobuf.Value), so each field is checked here, by name (camelCase or snake_case), with Google's 400s."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from localgem import errors


class Fields:
    """One JSON object of a request, read field by field; ``where`` names it in errors (``parameters``)."""

    def __init__(self, value: Any, where: str) -> None:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise errors.invalid_field(where, f"{where} must be a JSON object.")
        self._value = value
        self.where = where

    def raw(self, name: str) -> Any:
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
        return self._value.get(name, self._value.get(snake))

    def text(self, name: str, *, choices: tuple[str, ...] | None = None, max_chars: int = 100_000) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > max_chars:
            raise errors.invalid_field(f"{self.where}.{name}", f"{self.where}.{name} must be a string.")
        if choices is not None and value not in choices:
            raise errors.invalid_field(
                f"{self.where}.{name}",
                f"{self.where}.{name} {value!r} is not supported; use one of: {', '.join(choices)}.",
            )
        return value

    def integer(self, name: str, low: int, high: int) -> int | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)  # int64 as a JSON string
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise errors.invalid_field(
                f"{self.where}.{name}", f"{self.where}.{name} must be an integer from {low} to {high}."
            )
        return value

    def number(self, name: str, low: float, high: float) -> float | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
            raise errors.invalid_field(
                f"{self.where}.{name}", f"{self.where}.{name} must be a number from {low} to {high}."
            )
        return float(value)

    def flag(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is not None and not isinstance(value, bool):
            raise errors.invalid_field(f"{self.where}.{name}", f"{self.where}.{name} must be true or false.")
        return value

    def child(self, name: str) -> Fields:
        return Fields(self.raw(name), f"{self.where}.{name}")


def image_bytes(image: Fields) -> bytes | None:
    """An Image message's bytes (``bytesBase64Encoded``, standard or URL-safe base64); None if absent."""
    if image.raw("gcsUri") is not None:
        raise errors.invalid_field(
            f"{image.where}.gcsUri", "Images in Cloud Storage cannot be read here: send bytesBase64Encoded."
        )
    encoded = image.text("bytesBase64Encoded", max_chars=64 << 20)
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded.replace("-", "+").replace("_", "/") + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise errors.invalid_field(f"{image.where}.bytesBase64Encoded", "Invalid base64 image data.") from None
