"""API keys: which callers may use the server."""
