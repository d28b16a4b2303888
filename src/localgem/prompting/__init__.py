"""Prompt construction: API conversations → chat messages → the model's prompt text."""
