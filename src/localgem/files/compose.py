"""The Files API's parts, built over one set of repositories and one blob store, so that the app
wires a single object: which part feeds which (uploads start processing; the sweeper asks uploads
which sessions are live) stays inside this package."""

from __future__ import annotations

from dataclasses import dataclass

from localgem.files.processing import FileProcessing
from localgem.files.prompt_text import FileText
from localgem.files.service import Clock, FileLimits, FileService
from localgem.files.sweeper import FileSweeper
from localgem.files.uploads import UploadSessions
from localgem.perception import Senses
from localgem.storage.blobs import BlobStore
from localgem.storage.files import FileRepository
from localgem.storage.uploads import UploadRepository


@dataclass(frozen=True)
class Files:
    service: FileService  # get, list, delete, download; files the server writes
    uploads: UploadSessions
    processing: FileProcessing
    text: FileText  # a file's text for prompts
    sweeper: FileSweeper

    @classmethod
    def build(
        cls,
        files: FileRepository,
        uploads: UploadRepository,
        blobs: BlobStore,
        limits: FileLimits,
        clock: Clock,
        senses: Senses | None = None,
    ) -> Files:
        processing = FileProcessing(files, blobs, clock, senses)
        sessions = UploadSessions(files, uploads, blobs, limits, clock, processing)
        return cls(
            service=FileService(files, blobs, limits, clock),
            uploads=sessions,
            processing=processing,
            text=FileText(files, blobs, clock, senses),
            sweeper=FileSweeper(files, blobs, sessions, clock),
        )
