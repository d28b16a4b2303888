"""The Semantic Retriever: corpora of documents of chunks the client writes itself, searched by ``:query``,
shared with other projects by ``permissions``. wire.py (messages), service.py (the resource and its access
rules), routes.py (HTTP)."""
