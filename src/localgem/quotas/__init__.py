"""Rate limits per project, model and key, as Google's 429 RESOURCE_EXHAUSTED."""
