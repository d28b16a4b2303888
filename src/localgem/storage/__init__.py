"""Durable state: the database (SQLite by default, PostgreSQL at scale), its migrations, the
repositories the services use, and the blob store that keeps file bytes."""
