"""Long-running operations: the typed Operation (``model``), the one runner every kind of operation runs on
and the ``Worker`` that drives background duties (``runner``), the Operations methods by name for every
operation collection of the API (``service``, ``routes``), and webhooks sent when a batch ends."""
