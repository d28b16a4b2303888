"""Hearing and speaking for the text models: audio parts → marked transcripts, text → speech."""
