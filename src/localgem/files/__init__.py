"""The Files API: uploads (resumable, multipart, one-shot), get/list/delete/download, PDF processing,
expiry, and the text of a file for prompts.

routes.py and upload_routes.py speak HTTP; service.py (the resource), uploads.py (upload sessions),
processing.py (PDF text after upload), prompt_text.py (a file inside a prompt) and sweeper.py (expiry
and blob cleanup) do the work, built together by compose.py; convert.py turns stored rows into File
messages (wire.py).
"""
