"""Storage rows as plain dataclasses: what repositories take and return (never wire types)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class FileRecord:
    project: str
    id: str
    display_name: str | None
    mime_type: str
    size_bytes: int
    sha256: str
    state: str  # PROCESSING | ACTIVE | FAILED
    source: str  # UPLOADED | GENERATED
    create_time: datetime
    update_time: datetime
    expire_time: datetime
    text_sha256: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class UploadRecord:
    id: str
    token_digest: str
    project: str
    file_id: str
    display_name: str | None
    mime_type: str
    declared_size: int | None
    received: int
    create_time: datetime
    expire_time: datetime
    finalized: bool = False
    target: str | None = None  # JSON: where a finalized upload goes, if not into a file


@dataclass(frozen=True)
class KeyRecord:
    digest: str
    project: str
    hint: str
    create_time: datetime


@dataclass(frozen=True)
class PageCursor:
    """Where the previous page ended, in the list's order (newest first)."""

    create_time: datetime
    id: str


@dataclass(frozen=True)
class BatchRecord:
    project: str
    id: str
    kind: str  # embed | generate
    model: str
    display_name: str | None
    state: str  # BATCH_STATE_*
    priority: int
    request_count: int
    create_time: datetime
    update_time: datetime
    end_time: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    input_file: str | None = None  # file id: requests came from a JSONL file, results go to one
    responses_file: str | None = None
    webhook_config: str | None = None  # JSON {"uris", "userMetadata"}
    webhook_state: str | None = None  # PENDING (to be queued once final) | QUEUED


@dataclass(frozen=True)
class BatchItem:
    """One request of a batch; ``response`` or ``error`` (JSON text) once it is done."""

    position: int
    request: str
    metadata: str | None = None
    response: str | None = None
    error: str | None = None
    done: bool = False


@dataclass(frozen=True)
class BatchCounts:
    successful: int
    failed: int
    pending: int


@dataclass(frozen=True)
class CacheRecord:
    project: str
    id: str
    model: str
    display_name: str | None
    content: str  # JSON
    token_count: int
    create_time: datetime
    update_time: datetime
    expire_time: datetime


@dataclass(frozen=True)
class WebhookDelivery:
    """One POST of an event to one URL, retried until it is acknowledged or given up."""

    project: str
    id: str
    batch_id: str
    url: str
    payload: str
    state: str  # PENDING | DELIVERED | FAILED
    attempts: int
    next_attempt: datetime
    create_time: datetime
    update_time: datetime
    last_error: str | None = None


@dataclass(frozen=True)
class ModelRecord:
    """A model of the run-time catalogue; ``config`` is its ModelConfig as JSON."""

    id: str
    source: str  # cli | tuned | package
    config: str
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True)
class LiveStateRecord:
    """What a Live session resumption handle restores."""

    handle_digest: str
    project: str
    session_id: str
    state: str  # JSON {"setup", "history"}
    create_time: datetime
    expire_time: datetime


@dataclass(frozen=True)
class AuthTokenRecord:
    digest: str
    project: str
    uses_left: int | None  # None: unlimited
    expire_time: datetime
    new_session_expire_time: datetime
    setup: str | None
    field_mask: str | None
    create_time: datetime


@dataclass(frozen=True)
class FileSearchStoreRecord:
    project: str
    id: str
    display_name: str | None
    embedding_model: str
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True)
class DocumentCounts:
    active: int = 0
    pending: int = 0
    failed: int = 0
    size_bytes: int = 0


@dataclass(frozen=True)
class DocumentRecord:
    project: str
    store_id: str
    id: str
    display_name: str | None
    custom_metadata: str | None
    mime_type: str
    size_bytes: int
    sha256: str | None
    state: str
    origin: str
    chunking: str
    create_time: datetime
    update_time: datetime
    error: str | None = None
    chunk_count: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None

    @property
    def kind(self) -> str:
        """The operations runner's kind for a document's ingestion."""
        return "ingest"


@dataclass(frozen=True)
class CorpusRecord:
    id: str
    project: str
    display_name: str | None
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True)
class CorpusDocumentRecord:
    corpus_id: str
    id: str
    display_name: str | None
    custom_metadata: str | None
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True)
class ChunkRecord:
    corpus_id: str
    document_id: str
    id: str
    data: str
    custom_metadata: str | None
    state: str
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True)
class PermissionRecord:
    resource_id: str  # the corpus or tuned model
    id: str
    grantee_type: str
    email_address: str | None
    grantee: str | None
    role: str
    create_time: datetime


@dataclass(frozen=True)
class TunedModelRecord:
    id: str
    project: str
    display_name: str | None
    description: str | None
    base_model: str
    source_model: str | None
    defaults: str
    hyperparameters: str
    examples: str
    state: str
    operation_id: str
    total_steps: int
    create_time: datetime
    update_time: datetime
    snapshots: str = "[]"
    error: str | None = None
    start_time: datetime | None = None
    complete_time: datetime | None = None
    adapter: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None

    @property
    def kind(self) -> str:
        """The operations runner's kind for a tuning job."""
        return "tune"


@dataclass(frozen=True)
class GeneratedFileRecord:
    """A video generation job and the file it makes (``generatedFiles/<id>``)."""

    project: str
    id: str
    operation_id: str
    model: str
    model_id: str
    request: str
    mime_type: str
    state: str
    create_time: datetime
    update_time: datetime
    expire_time: datetime
    progress: int = 0
    error: str | None = None
    file_id: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None

    @property
    def kind(self) -> str:
        """The operations runner's kind for a video job."""
        return "video"
