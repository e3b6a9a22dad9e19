"""GCS adapter: the few object operations the stages need, with checksums."""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from google.api_core import exceptions as gexc

from shared.clients import storage_client


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    md5: str
    generation: int | None = None  # as `info` found it: `read_range` of that generation reads that content


class BucketUnavailable(RuntimeError):
    """A write GCS refuses for the bucket itself: it does not exist, or this identity may not write there."""


@contextmanager
def writing(bucket: str, name: str) -> Iterator[None]:
    """Turns GCS's 404 and 403 on a write into BucketUnavailable naming the bucket, the object and
    the fix. Only for uploads: a 404 there can only mean the bucket is missing."""
    try:
        yield
    except gexc.NotFound:
        raise BucketUnavailable(f"bucket gs://{bucket} does not exist (writing {name}): check gcs.bucket in the "
                                "config, or create it (infra/ does)") from None
    except gexc.Forbidden as error:
        raise BucketUnavailable(f"this identity may not write gs://{bucket}/{name}: {error.message}") from None


def uri(bucket: str, name: str) -> str:
    return f"gs://{bucket}/{name}"


def split_uri(value: str) -> tuple[str, str]:
    if not value.startswith("gs://") or "/" not in value[5:]:
        raise ValueError(f"not a gs:// object URI: {value!r}")
    bucket, _, name = value[5:].partition("/")
    return bucket, name


def md5_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def upload(bucket: str, name: str, data: bytes, content_type: str, *, only_if_new: bool = False) -> ObjectInfo:
    """Uploads and returns what GCS confirms; the MD5 sent along makes GCS reject a corrupted body."""
    blob = storage_client().bucket(bucket).blob(name)
    blob.md5_hash = md5_base64(data)
    blob.upload_from_string(
        data, content_type=content_type, if_generation_match=0 if only_if_new else None, checksum=None
    )
    if blob.md5_hash != md5_base64(data):
        raise IOError(f"{uri(bucket, name)}: GCS reports MD5 {blob.md5_hash}, expected {md5_base64(data)}")
    return ObjectInfo(uri(bucket, name), len(data), blob.md5_hash)


def upload_file(bucket: str, name: str, body: BinaryIO, size: int, md5: str, content_type: str) -> ObjectInfo:
    """`upload` for a body already on disk (or spooled): `md5`, its base64 MD5, sent along and checked."""
    blob = storage_client().bucket(bucket).blob(name)
    blob.md5_hash = md5
    with writing(bucket, name):
        blob.upload_from_file(body, size=size, content_type=content_type, checksum=None, rewind=True)
    if blob.md5_hash != md5:
        raise IOError(f"{uri(bucket, name)}: GCS reports MD5 {blob.md5_hash}, expected {md5}")
    return ObjectInfo(uri(bucket, name), size, md5)


def read(bucket: str, name: str) -> bytes:
    return storage_client().bucket(bucket).blob(name).download_as_bytes()


def info(object_uri: str) -> ObjectInfo | None:
    """Size and MD5 of an object, or None when it does not exist (metadata only, no download)."""
    bucket, name = split_uri(object_uri)
    blob = storage_client().bucket(bucket).get_blob(name)
    if blob is None:
        return None
    return ObjectInfo(object_uri, int(blob.size or 0), blob.md5_hash or "", blob.generation)


def read_range(object_uri: str, start: int, end: int, generation: int | None = None) -> bytes:
    """Bytes start..end (inclusive) of the object, of `generation` when given (gone once replaced: NotFound)."""
    bucket, name = split_uri(object_uri)
    blob = storage_client().bucket(bucket).blob(name, generation=generation)
    return blob.download_as_bytes(start=start, end=end, checksum=None)


def delete_with_suffix(object_uri: str, suffix: str) -> bool:
    """Deletes the object if its name ends with `suffix` (the only names a deleting identity's IAM
    condition admits). False: another name, left alone, or already gone."""
    bucket, name = split_uri(object_uri)
    if not suffix or not name.endswith(suffix):
        return False
    try:
        storage_client().bucket(bucket).delete_blob(name)
    except gexc.NotFound:
        return False
    return True


def ensure_bucket(bucket: str, project: str | None = None) -> None:
    client = storage_client(project)
    try:
        client.create_bucket(bucket)
    except gexc.Conflict:
        pass
