"""What an operator watches: Prometheus metrics (``metrics``: ``GET /metrics``) and one JSON log line per request
with its request id (``requests``: the ASGI middleware that measures every request and feeds both)."""
