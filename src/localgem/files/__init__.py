"""The Files API: uploads (resumable, multipart, one-shot), get/list/delete/download, expiry, and the text of a
file for prompts."""
