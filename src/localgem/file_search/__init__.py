"""File Search: stores of documents that are chunked, embedded and indexed, and the ``fileSearch`` tool that
grounds generation in them.

wire.py (messages), service.py (stores, documents, their operations), ingestion.py (the executor that indexes a
document), uploads.py (upload sessions that end in a document), retriever.py (the tool), routes.py and
upload_routes.py (HTTP).
"""
