"""The database schema (SQLAlchemy Core). Changes go through an Alembic migration in ``migrations/``."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Boolean, Column, Index, MetaData, String, Table, Text, UniqueConstraint
from sqlalchemy.types import TypeDecorator


class UtcTime(TypeDecorator[datetime]):
    """A UTC instant stored as integer microseconds: exact and ordered the same on SQLite and PostgreSQL."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> int | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: localgem stores UTC instants only")
        delta = value - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

    def process_result_value(self, value: int | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return datetime.fromtimestamp(value // 1_000_000, UTC).replace(microsecond=value % 1_000_000)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("digest", String(64), primary_key=True),  # sha256 hex of the key; the key itself is never stored
    Column("project", String(40), nullable=False),
    Column("hint", String(16), nullable=False),  # the key's first characters, to tell keys apart
    Column("create_time", UtcTime, nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("create_time", UtcTime, nullable=False),
)

files = Table(
    "files",
    metadata,
    Column("project", String(40), primary_key=True),
    Column("id", String(40), primary_key=True),
    Column("display_name", Text),
    Column("mime_type", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),  # the content's blob
    Column("text_sha256", String(64)),  # blob of the text extracted for prompts (PDF)
    Column("state", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("error", Text),
    Column("create_time", UtcTime, nullable=False),
    Column("update_time", UtcTime, nullable=False),
    Column("expire_time", UtcTime, nullable=False),
    Index("ix_files_project_create_time", "project", "create_time"),
    Index("ix_files_expire_time", "expire_time"),
    Index("ix_files_sha256", "sha256"),
    Index("ix_files_text_sha256", "text_sha256"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(40), primary_key=True),  # also names the partial bytes in the blob store
    Column("token_digest", String(64), nullable=False),  # sha256 hex of the upload URL's secret
    Column("project", String(40), nullable=False),
    Column("file_id", String(40), nullable=False),
    Column("display_name", Text),
    Column("mime_type", Text, nullable=False),
    Column("declared_size", BigInteger),
    Column("received", BigInteger, nullable=False),  # bytes acknowledged to the client
    Column("create_time", UtcTime, nullable=False),
    Column("expire_time", UtcTime, nullable=False),
    Column("finalized", Boolean, nullable=False, default=False),
    # JSON: where the bytes go when finalized, if not into a file ({"kind": "fileSearchStore", ...})
    Column("target", Text),
    UniqueConstraint("token_digest"),
    Index("ix_uploads_project_file_id", "project", "file_id"),
    Index("ix_uploads_expire_time", "expire_time"),
)

batches = Table(
    "batches",
    metadata,
    Column("project", String(40), primary_key=True),
    Column("id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),  # "embed" (EmbedContentBatch) or "generate"
    Column("model", Text, nullable=False),  # as named at creation (models/…)
    Column("display_name", Text),
    Column("state", String(32), nullable=False),  # Google's BATCH_STATE_* names
    Column("priority", BigInteger, nullable=False, default=0),
    Column("request_count", BigInteger, nullable=False),
    Column("lease_owner", String(40)),  # the server process running it, while its lease holds
    Column("lease_until", UtcTime),
    Column("create_time", UtcTime, nullable=False),
    Column("update_time", UtcTime, nullable=False),
    Column("end_time", UtcTime),
    Column("input_file", String(40)),  # the id of the JSONL file the requests came from, if any
    Column("responses_file", String(40)),  # the id of the JSONL file of results, once written
    Column("webhook_config", Text),  # JSON {"uris", "userMetadata"}: where to report the final state
    Column("webhook_state", String(16)),  # PENDING until its final state is queued for delivery, then QUEUED
    Index("ix_batches_project_create_time", "project", "create_time"),
    Index("ix_batches_state", "state"),
    Index("ix_batches_webhook_state", "webhook_state"),
)

batch_requests = Table(
    "batch_requests",
    metadata,
    Column("project", String(40), primary_key=True),
    Column("batch_id", String(40), primary_key=True),
    Column("position", BigInteger, primary_key=True),  # input order
    Column("request", Text, nullable=False),  # JSON, as the client sent it
    Column("metadata", Text),  # JSON, echoed with the result
    Column("response", Text),  # JSON; set once, with ``error``, when the request is done
    Column("error", Text),  # JSON google.rpc.Status
    Column("done", Boolean, nullable=False, default=False),
)

cached_contents = Table(
    "cached_contents",
    metadata,
    Column("project", String(40), primary_key=True),
    Column("id", String(40), primary_key=True),
    Column("model", String(64), nullable=False),  # the local model id
    Column("display_name", Text),
    Column("content", Text, nullable=False),  # JSON: contents, systemInstruction, tools, toolConfig
    Column("token_count", BigInteger, nullable=False),
    Column("create_time", UtcTime, nullable=False),
    Column("update_time", UtcTime, nullable=False),
    Column("expire_time", UtcTime, nullable=False),
    Index("ix_cached_contents_expire_time", "expire_time"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("project", String(40), primary_key=True),
    Column("id", String(64), primary_key=True),  # the webhook-id header: the same on every attempt
    Column("batch_id", String(40), nullable=False),  # what it reports on
    Column("url", Text, nullable=False),
    Column("payload", Text, nullable=False),  # the JSON body, fixed when queued
    Column("state", String(16), nullable=False),  # PENDING | DELIVERED | FAILED
    Column("attempts", BigInteger, nullable=False),
    Column("next_attempt", UtcTime, nullable=False),  # when due; pushed ahead while an attempt is in flight
    Column("last_error", Text),
    Column("create_time", UtcTime, nullable=False),
    Column("update_time", UtcTime, nullable=False),
    Index("ix_webhook_deliveries_state_next_attempt", "state", "next_attempt"),
)

webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("project", String(40), primary_key=True),
    Column("secret", Text, nullable=False),  # whsec_<base64>: signs the project's webhook deliveries
    Column("create_time", UtcTime, nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("id", String(64), primary_key=True),  # the local model id (models/<id>)
    Column("source", String(16), nullable=False),  # who added it: cli | tuned | package
    Column("config", Text, nullable=False),  # JSON: the ModelConfig, as settings would give it
    Column("create_time", UtcTime, nullable=False),
    Column("update_time", UtcTime, nullable=False),
)

live_sessions = Table(
    "live_sessions",
    metadata,
    Column("handle_digest", String(64), primary_key=True),  # sha256 hex of the resumption handle
    Column("project", String(40), nullable=False),
    Column("session_id", String(40), nullable=False),  # one session's handles follow each other
    Column("state", Text, nullable=False),  # JSON: {"setup": BidiGenerateContentSetup, "history": [Content]}
    Column("create_time", UtcTime, nullable=False),
    Column("expire_time", UtcTime, nullable=False),
    Index("ix_live_sessions_session_id", "session_id"),
    Index("ix_live_sessions_expire_time", "expire_time"),
)

auth_tokens = Table(
    "auth_tokens",
    metadata,
    Column("digest", String(64), primary_key=True),  # sha256 hex of the token (its name); never stored itself
    Column("project", String(40), nullable=False),
    Column("uses_left", BigInteger),  # null: unlimited
    Column("expire_time", UtcTime, nullable=False),
    Column("new_session_expire_time", UtcTime, nullable=False),
    Column("setup", Text),  # JSON BidiGenerateContentSetup the token locks, if any
    Column("field_mask", Text),  # the setup fields it locks (none: all of them)
    Column("create_time", UtcTime, nullable=False),
    Index("ix_auth_tokens_expire_time", "expire_time"),
)

file_search_stores = Table(
    "file_search_stores",
    metadata,
    Column("project", String(40), primary_key=True),
    Column("id", String(40), primary_key=True),
    Column("display_name", Text),
    Column("embedding_model", Text, nullable=False),  # models/<id> of the embedder its chunks were embedded by
    Column("create_time", UtcTime, nullable=False),
    Column("update_time", UtcTime, nullable=False),
    Index("ix_file_search_stores_project", "project", "create_time"),
)

file_search_documents = Table(
    "file_search_documents",
    metadata,
    Column("project", String(40), primary_key=True),
    Column("store_id", String(40), primary_key=True),
    Column("id", String(40), primary_key=True),  # also the id of the operation that ingests it
    Column("display_name", Text),
    Column("custom_metadata", Text),  # JSON: [CustomMetadata] as the client sent it
    Column("mime_type", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64)),  # the raw bytes' blob
    Column("state", String(16), nullable=False),  # STATE_PENDING | STATE_ACTIVE | STATE_FAILED
    Column("error", Text),  # why it failed
    Column("origin", String(8), nullable=False),  # upload | import: which operation collection names it
    Column("chunking", Text, nullable=False),  # JSON {"max_tokens", "overlap_tokens"}
    Column("chunk_count", BigInteger, nullable=False),
    Column("lease_owner", String(40)),  # the server ingesting it, while its lease holds
    Column("lease_until", UtcTime),
    Column("create_time", UtcTime, nullable=False),
    Column("update_time", UtcTime, nullable=False),
    Index("ix_file_search_documents_project", "project", "store_id", "create_time"),
    Index("ix_file_search_documents_state", "state"),
    Index("ix_file_search_documents_sha256", "sha256"),
)

corpora = Table(
    "corpora",
    metadata,
    Column("id", String(40), primary_key=True),  # corpora/<id>: shared by name across projects (permissions)
    Column("project", String(40), nullable=False),  # the owner
    Column("display_name", Text),
    Column("create_time", UtcTime, nullable=False),
    Column("update_time", UtcTime, nullable=False),
    Index("ix_corpora_project", "project", "create_time"),
)

corpus_documents = Table(
    "corpus_documents",
    metadata,
    Column("corpus_id", String(40), primary_key=True),
    Column("id", String(40), primary_key=True),
    Column("display_name", Text),
    Column("custom_metadata", Text),  # JSON [CustomMetadata]
    Column("create_time", UtcTime, nullable=False),
    Column("update_time", UtcTime, nullable=False),
)

corpus_chunks = Table(
    "corpus_chunks",
    metadata,
    Column("corpus_id", String(40), primary_key=True),
    Column("document_id", String(40), primary_key=True),
    Column("id", String(40), primary_key=True),
    Column("data", Text, nullable=False),  # ChunkData.stringValue
    Column("custom_metadata", Text),  # JSON [CustomMetadata]
    Column("state", String(32), nullable=False),
    Column("create_time", UtcTime, nullable=False),
    Column("update_time", UtcTime, nullable=False),
)

corpus_permissions = Table(
    "corpus_permissions",
    metadata,
    Column("corpus_id", String(40), primary_key=True),
    Column("id", String(40), primary_key=True),
    Column("grantee_type", String(16), nullable=False),  # USER | GROUP | EVERYONE
    Column("email_address", Text),  # as the client gave it
    Column("grantee", String(40)),  # the localgem project it names (null: everyone)
    Column("role", String(16), nullable=False),  # READER | WRITER | OWNER
    Column("create_time", UtcTime, nullable=False),
)

tuned_models = Table(
    "tuned_models",
    metadata,
    Column("id", String(40), primary_key=True),  # tunedModels/<id>: shared by name across projects (permissions)
    Column("project", String(40), nullable=False),  # the owner
    Column("display_name", Text),
    Column("description", Text),
    Column("base_model", Text, nullable=False),  # models/<id>: whose weights the adapter applies over
    Column("source_model", Text),  # tunedModels/<id> it started from (tunedModelSource), if any
    Column("defaults", Text, nullable=False),  # JSON {"temperature", "top_p", "top_k"}: the request's when unset
    Column("hyperparameters", Text, nullable=False),  # JSON {"epoch_count", "batch_size", "learning_rate"}
    Column("examples", Text, nullable=False),  # JSON [[text_input, output]], input only
    Column("state", String(16), nullable=False),  # CREATING | ACTIVE | FAILED
    Column("error", Text),  # why it failed
    Column("operation_id", String(40), nullable=False),  # tunedModels/<id>/operations/<operation_id>
    Column("total_steps", BigInteger, nullable=False),
    Column("snapshots", Text, nullable=False),  # JSON [{"step", "epoch", "mean_loss", "compute_time"}]
    Column("start_time", UtcTime),
    Column("complete_time", UtcTime),
    Column("adapter", String(64)),  # the sha256 of the LoRA adapter (GGUF) in the blob store, once trained
    Column("lease_owner", String(40)),  # the server training it, while its lease holds
    Column("lease_until", UtcTime),
    Column("create_time", UtcTime, nullable=False),
    Column("update_time", UtcTime, nullable=False),
    Index("ix_tuned_models_project", "project", "create_time"),
    Index("ix_tuned_models_state", "state"),
)

tuned_model_permissions = Table(
    "tuned_model_permissions",
    metadata,
    Column("tuned_model_id", String(40), primary_key=True),
    Column("id", String(40), primary_key=True),
    Column("grantee_type", String(16), nullable=False),  # USER | GROUP | EVERYONE
    Column("email_address", Text),
    Column("grantee", String(40)),  # the localgem project it names (null: everyone)
    Column("role", String(16), nullable=False),  # READER | WRITER | OWNER
    Column("create_time", UtcTime, nullable=False),
)

generated_files = Table(
    "generated_files",
    metadata,
    Column("project", String(40), primary_key=True),
    Column("id", String(40), primary_key=True),  # generatedFiles/<id>
    Column("operation_id", String(40), nullable=False, unique=True),  # models/<model>/operations/<operation_id>
    Column("model", Text, nullable=False),  # models/<id> as the request named it
    Column("model_id", String(63), nullable=False),  # the local video model that runs it
    Column("request", Text, nullable=False),  # JSON: the validated job (prompt, frames, size, seed...)
    Column("mime_type", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # GENERATING | GENERATED | FAILED
    Column("error", Text),  # "CODE: message", once FAILED
    Column("file_id", String(40)),  # files/<id>: the video, once GENERATED
    Column("progress", BigInteger, nullable=False),  # denoising steps done
    Column("lease_owner", String(40)),
    Column("lease_until", UtcTime),
    Column("create_time", UtcTime, nullable=False),
    Column("update_time", UtcTime, nullable=False),
    Column("expire_time", UtcTime, nullable=False),
    Index("ix_generated_files_state", "state"),
    Index("ix_generated_files_project", "project", "create_time"),
)

quota_usage = Table(
    "quota_usage",
    metadata,
    Column("bucket", String(400), primary_key=True),  # limit kind, project, model (and key) a counter is for
    Column("window_start", BigInteger, primary_key=True),  # epoch seconds: the minute or day it counts
    Column("used", BigInteger, nullable=False),  # requests or input tokens
)

quota_leases = Table(
    "quota_leases",
    metadata,
    Column("id", String(40), primary_key=True),  # one request's leases share an id
    Column("bucket", String(400), primary_key=True),
    Column("expire_time", UtcTime, nullable=False),  # a server that died leaves its requests' leases to expire
    Index("ix_quota_leases_bucket", "bucket", "expire_time"),
)
