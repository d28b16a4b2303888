"""The blob store on S3 (or any S3-compatible server: MinIO, SeaweedFS, Ceph RGW, R2, ...).

Keys, under the configured prefix:

- ``blobs/<aa>/<sha256>``: a blob, by content, as on local disk.
- ``partials/<upload id>/<offset, 20 digits>``: one acknowledged piece of an upload's bytes, starting at
  that offset. Each ``write_partial`` call stores what it receives as pieces of up to 8 MiB. The state of
  an upload lives in the bucket only, so the chunks of one upload may arrive at different replicas.
- ``partials/<upload id>/open``: an empty marker, so that an upload with no bytes yet exists.

A partial's bytes are the *chain* of pieces: the piece at offset 0, then the piece at the offset where it
ends, and so on until no piece starts there. Pieces beyond a gap (left by a crash while cutting back) are
not part of it, and are deleted by the next write or discard.

Durability: S3 acknowledges a PUT only once the object is stored, so a chunk is acknowledged to the client
only after every one of its pieces was PUT. Writing at an offset first cuts the partial there: a piece
straddling the offset is rewritten short (one atomic PUT), then the piece starting at the offset and all
later ones are deleted, the first of them first; a crash at any step leaves the chain ending at the
offset. A failure while writing deletes the pieces this call wrote. Publishing copies the chain,
server-side (CopyObject for one piece, a multipart upload of UploadPartCopy parts, small pieces joined,
for more), into ``blobs/<aa>/<sha256>`` — the complete object appears at once, when S3 confirms it —
and only then deletes the pieces; the database records the file after that. A crash therefore leaves at
worst bytes without a record (pieces or an unreferenced blob, swept later), never a record without bytes.

Sealing hashes the chain (one read of the bytes: the hash state of other replicas cannot be shared) and
remembers which pieces (key, size, ETag) it hashed; publishing copies exactly those, each copy
conditional on the ETag, so bytes appended or rewritten between the seal and the publish cannot end up
under a sha256 they do not have.

Client: boto3 (the AWS SDK, kept by AWS), its blocking calls run in threads (``asyncio.to_thread``).
aiobotocore would avoid the threads, but pins exact botocore versions and brings aiohttp; the store makes
few, large calls, for which a thread each costs nothing measurable.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from localgem.storage.blobs import SHA256, UPLOAD_ID, Sealed, TooLarge

_PIECE = 8 << 20  # bytes per partial piece: memory held per upload in flight is about twice this
_MIN_PART = 5 << 20  # S3's smallest multipart part (but the last)
_MAX_PARTS = 10_000
_READ_CHUNK = 1 << 20
_OFFSET_DIGITS = 20
_MARKER = "open"


@dataclass(frozen=True)
class _Piece:
    key: str
    offset: int
    size: int
    etag: str


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ends with "/"

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket`` or ``s3://bucket/some/prefix``."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
        prefix = parsed.path.strip("/")
        return cls(parsed.netloc, prefix + "/" if prefix else "")


def s3_client(
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> Any:
    """A boto3 S3 client; credentials default to boto3's own chain (AWS_* env vars, profiles, roles)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise RuntimeError(
            "blob_url is an s3:// URL: install localgem's s3 extra (pip install 'localgem[s3]')"
        ) from None

    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=32,
        # Checksums only where S3 requires them: many S3-compatible servers refuse the CRC headers
        # that botocore otherwise sends with every upload.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # Path-style addressing for a custom endpoint (MinIO, SeaweedFS): no DNS per bucket needed.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=config,
    )


def _missing(exc: BaseException) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in {"NoSuchKey", "404", "NotFound"}


class S3BlobStore:
    """Blobs as objects in an S3 bucket. Every key is built from a validated id, never from raw input.

    ``cache_dir`` holds local copies for ``local_path`` (readers that need a file), verified by sha256."""

    def __init__(self, client: Any, location: S3Location, cache_dir: Path, clock: Callable[[], float] = time.time):
        self._s3 = client
        self._bucket = location.bucket
        self._prefix = location.prefix
        self._cache = cache_dir
        self._clock = clock
        # What the last seal of each partial in this process hashed: publish copies exactly that.
        self._sealed: dict[str, tuple[str, list[_Piece]]] = {}
        self._fetching: dict[str, asyncio.Lock] = {}

    # -- keys -------------------------------------------------------------------------------------

    def _partial_prefix(self, upload_id: str) -> str:
        if not UPLOAD_ID.fullmatch(upload_id):
            raise ValueError(f"not an upload id: {upload_id!r}")
        return f"{self._prefix}partials/{upload_id}/"

    def _blob_key(self, sha256: str) -> str:
        if not SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return f"{self._prefix}blobs/{sha256[:2]}/{sha256}"

    # -- S3 calls, each in a thread -----------------------------------------------------------------

    def _list(self, prefix: str, delimiter: str | None = None) -> tuple[list[dict], list[str]]:
        objects: list[dict] = []
        prefixes: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        for page in self._s3.get_paginator("list_objects_v2").paginate(**kwargs):
            objects.extend(page.get("Contents", []))
            prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
        return objects, prefixes

    def _pieces(self, prefix: str) -> tuple[list[_Piece], bool]:
        """All pieces of a partial (by offset), and whether it exists at all."""
        objects, _ = self._list(prefix)
        pieces = []
        for obj in objects:
            name = obj["Key"][len(prefix) :]
            if len(name) == _OFFSET_DIGITS and name.isdigit():
                pieces.append(_Piece(obj["Key"], int(name), obj["Size"], obj["ETag"]))
        return sorted(pieces, key=lambda p: p.offset), bool(objects)

    @staticmethod
    def _chain(pieces: list[_Piece]) -> list[_Piece]:
        by_offset = {p.offset: p for p in pieces if p.size > 0}
        chain, position = [], 0
        while (piece := by_offset.get(position)) is not None:
            chain.append(piece)
            position += piece.size
        return chain

    def _put(self, key: str, body: bytes) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body)

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            response = self._s3.delete_objects(
                Bucket=self._bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
            if errors := response.get("Errors"):
                raise OSError(f"S3 could not delete {len(errors)} objects: {errors[0]}")

    def _cut(self, prefix: str, offset: int) -> None:
        """Make the partial end at ``offset``, crash-safely (see the module docstring)."""
        pieces, exists = self._pieces(prefix)
        if not exists:
            self._put(prefix + _MARKER, b"")
        chain = self._chain(pieces)
        end = chain[-1].offset + chain[-1].size if chain else 0
        if offset > end:
            raise ValueError(f"offset {offset} is past the {end} bytes of the partial")
        for piece in chain:
            if piece.offset < offset < piece.offset + piece.size:  # straddles the cut: keep its head
                head = self._s3.get_object(
                    Bucket=self._bucket, Key=piece.key, Range=f"bytes=0-{offset - piece.offset - 1}"
                )["Body"].read()
                self._put(piece.key, head)
        later = [p.key for p in pieces if p.offset >= offset]
        if later:
            self._s3.delete_object(Bucket=self._bucket, Key=later[0])  # first: the chain now ends at offset
            self._delete_keys(later[1:])

    # -- the BlobStore protocol ---------------------------------------------------------------------

    async def write_partial(self, upload_id: str, offset: int, chunks: AsyncIterator[bytes], limit: int) -> int:
        prefix = self._partial_prefix(upload_id)
        self._sealed.pop(upload_id, None)
        await asyncio.to_thread(self._cut, prefix, offset)
        position = offset  # where the next piece starts
        putting: asyncio.Future[None] | None = None  # the previous piece, stored while the next arrives
        try:
            pending: list[bytes] = []
            pending_size = 0
            async for chunk in chunks:
                if position + pending_size + len(chunk) > limit:
                    raise TooLarge(limit)
                pending.append(chunk)
                pending_size += len(chunk)
                while pending_size >= _PIECE:
                    joined = b"".join(pending)
                    piece, rest = joined[:_PIECE], joined[_PIECE:]
                    if putting is not None:
                        await putting
                    putting = asyncio.ensure_future(asyncio.to_thread(self._put, _piece_key(prefix, position), piece))
                    position += len(piece)
                    pending, pending_size = ([rest], len(rest)) if rest else ([], 0)
            if putting is not None:
                await putting
                putting = None
            if pending_size:
                await asyncio.to_thread(self._put, _piece_key(prefix, position), b"".join(pending))
                position += pending_size
            return position
        except BaseException:
            if putting is not None:  # a thread cannot be stopped: let it finish before cutting back
                await asyncio.shield(asyncio.wait([putting]))
                if putting.done() and not putting.cancelled():
                    putting.exception()  # retrieved: the error being raised is the one to report
            await asyncio.shield(asyncio.to_thread(self._cut, prefix, offset))
            raise

    async def seal_partial(self, upload_id: str) -> Sealed:
        prefix = self._partial_prefix(upload_id)
        pieces, exists = await asyncio.to_thread(self._pieces, prefix)
        if not exists:
            raise FileNotFoundError(f"no partial {upload_id}")
        chain = self._chain(pieces)
        digest = hashlib.sha256()
        for piece in chain:
            await asyncio.to_thread(self._hash_piece, piece, digest)
        size = sum(piece.size for piece in chain)
        self._sealed[upload_id] = (digest.hexdigest(), chain)
        return Sealed(digest.hexdigest(), size)

    def _hash_piece(self, piece: _Piece, digest: Any) -> None:
        body = self._s3.get_object(Bucket=self._bucket, Key=piece.key, IfMatch=piece.etag)["Body"]
        got = 0
        while chunk := body.read(_READ_CHUNK):
            digest.update(chunk)
            got += len(chunk)
        if got != piece.size:
            raise OSError(f"{piece.key}: read {got} bytes of {piece.size}")

    async def publish(self, upload_id: str, sha256: str) -> None:
        prefix = self._partial_prefix(upload_id)
        key = self._blob_key(sha256)
        sealed = self._sealed.get(upload_id)
        if sealed is None or sealed[0] != sha256:  # sealed elsewhere, or before a restart: hash again here
            if (await self.seal_partial(upload_id)).sha256 != sha256:
                raise ValueError(f"partial {upload_id} does not hold the bytes of {sha256}")
            sealed = self._sealed[upload_id]
        await asyncio.to_thread(self._publish, prefix, key, sealed[1])
        self._sealed.pop(upload_id, None)

    def _publish(self, prefix: str, key: str, chain: list[_Piece]) -> None:
        if self._exists(key):
            self._touch(key)  # known content: keep the one copy, fresh for the orphan sweep
        elif not chain:
            self._put(key, b"")
        elif len(chain) == 1:
            self._s3.copy_object(
                Bucket=self._bucket, Key=key, CopySource=self._source(chain[0]), CopySourceIfMatch=chain[0].etag
            )
        else:
            self._copy_multipart(key, chain)
        self._delete_keys([obj["Key"] for obj in self._list(prefix)[0]])

    def _source(self, piece: _Piece) -> dict[str, str]:
        return {"Bucket": self._bucket, "Key": piece.key}

    def _copy_multipart(self, key: str, chain: list[_Piece]) -> None:
        """One multipart upload: pieces of at least 5 MiB are copied server-side, smaller ones joined."""
        upload = self._s3.create_multipart_upload(Bucket=self._bucket, Key=key)["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            buffer: list[bytes] = []
            buffered = 0

            def add_part(**kwargs: Any) -> None:
                number = len(parts) + 1
                if number > _MAX_PARTS:
                    raise OSError(f"more than {_MAX_PARTS} parts")
                common = {"Bucket": self._bucket, "Key": key, "UploadId": upload, "PartNumber": number}
                if "Body" in kwargs:
                    etag = self._s3.upload_part(**common, **kwargs)["ETag"]
                else:
                    etag = self._s3.upload_part_copy(**common, **kwargs)["CopyPartResult"]["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})

            for piece in chain:
                if not buffer and piece.size >= _MIN_PART:
                    add_part(CopySource=self._source(piece), CopySourceIfMatch=piece.etag)
                    continue
                body = self._s3.get_object(Bucket=self._bucket, Key=piece.key, IfMatch=piece.etag)["Body"].read()
                if len(body) != piece.size:
                    raise OSError(f"{piece.key}: read {len(body)} bytes of {piece.size}")
                buffer.append(body)
                buffered += len(body)
                if buffered >= _MIN_PART:
                    add_part(Body=b"".join(buffer))
                    buffer, buffered = [], 0
            if buffer:
                add_part(Body=b"".join(buffer))
            self._s3.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            try:
                self._s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload)
            except Exception:  # the first error is the one to report
                pass
            raise

    def _exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self._bucket, Key=key)
        except Exception as exc:
            if _missing(exc):
                return False
            raise
        return True

    def _touch(self, key: str) -> None:
        """A new LastModified, the bytes unchanged: a copy onto itself (S3 needs a metadata change for that)."""
        self._s3.copy_object(
            Bucket=self._bucket,
            Key=key,
            CopySource={"Bucket": self._bucket, "Key": key},
            MetadataDirective="REPLACE",
            Metadata={"published": f"{self._clock():.3f}"},
        )

    async def discard_partial(self, upload_id: str) -> None:
        prefix = self._partial_prefix(upload_id)
        self._sealed.pop(upload_id, None)
        objects, _ = await asyncio.to_thread(self._list, prefix)
        keys = sorted((obj["Key"] for obj in objects), key=lambda k: k.endswith(_MARKER))  # the marker last
        if keys:
            await asyncio.to_thread(self._delete_keys, keys)

    async def partial_ids(self) -> list[str]:
        root = f"{self._prefix}partials/"
        # Every key, not CommonPrefixes: some servers (SeaweedFS) list a folder emptied of its objects.
        objects, _ = await asyncio.to_thread(self._list, root)
        ids = {obj["Key"][len(root) :].split("/", 1)[0] for obj in objects}
        return sorted(upload_id for upload_id in ids if UPLOAD_ID.fullmatch(upload_id))

    async def read(self, sha256: str) -> AsyncIterator[bytes]:
        key = self._blob_key(sha256)
        body = await asyncio.to_thread(self._get_body, key)
        try:
            while chunk := await asyncio.to_thread(body.read, _READ_CHUNK):
                yield chunk
        finally:
            body.close()

    def _get_body(self, key: str) -> Any:
        try:
            return self._s3.get_object(Bucket=self._bucket, Key=key)["Body"]
        except Exception as exc:
            if _missing(exc):
                raise FileNotFoundError(key) from None
            raise

    async def read_all(self, sha256: str) -> bytes:
        key = self._blob_key(sha256)
        return await asyncio.to_thread(lambda: self._get_body(key).read())

    async def delete(self, sha256: str) -> None:
        key = self._blob_key(sha256)
        await asyncio.to_thread(self._s3.delete_object, Bucket=self._bucket, Key=key)
        (self._cache / sha256[:2] / sha256).unlink(missing_ok=True)

    async def local_path(self, sha256: str) -> Path:
        """A local copy under ``cache_dir``, fetched on first use and verified against its sha256."""
        key = self._blob_key(sha256)
        path = self._cache / sha256[:2] / sha256
        async with self._fetching.setdefault(sha256, asyncio.Lock()):
            if not path.exists():
                await asyncio.to_thread(self._fetch, key, sha256, path)
        return path

    def _fetch(self, key: str, sha256: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = self._get_body(key)
        digest = hashlib.sha256()
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".fetch-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := body.read(_READ_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != sha256:
                raise OSError(f"{key}: the bytes in the bucket do not have the sha256 they are stored under")
            os.replace(temp, path)
        finally:
            Path(temp).unlink(missing_ok=True)

    async def prune_local_copies(self) -> int:
        return await asyncio.to_thread(self._prune_local_copies)

    def _prune_local_copies(self) -> int:
        pruned = 0
        for path in self._cache.glob("??/*"):
            if SHA256.fullmatch(path.name) and not self._exists(self._blob_key(path.name)):
                path.unlink(missing_ok=True)  # a reader that has it open keeps reading (POSIX)
                pruned += 1
        return pruned

    async def stale_blobs(self, older_than_s: float) -> list[str]:
        objects, _ = await asyncio.to_thread(self._list, f"{self._prefix}blobs/")
        # LastModified is in whole seconds, cut down: an object may be up to a second younger than it says.
        before = self._clock() - older_than_s - 1
        found = []
        for obj in objects:
            name = obj["Key"].rsplit("/", 1)[-1]
            if SHA256.fullmatch(name) and obj["LastModified"].timestamp() < before:
                found.append(name)
        return found


def _piece_key(prefix: str, offset: int) -> str:
    return f"{prefix}{offset:0{_OFFSET_DIGITS}d}"
