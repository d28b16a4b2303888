"""Long-running operations: the one runner (lease, claim, renew, cancel, expire) every kind of operation runs on,
and webhooks sent when one ends."""
