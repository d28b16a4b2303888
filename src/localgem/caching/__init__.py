"""cachedContents: stored conversation prefixes, applied in front of later requests, with their KV state kept by
the engine."""
