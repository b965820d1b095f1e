"""S3 access for image uris and exports: one client factory, uploads that survive flaky networks.

Configuration comes from the environment only (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
DATAENGINE_S3_ENDPOINT_URL for MinIO / SeaweedFS / moto), so no secret is ever passed through arguments, logged,
or written into a manifest.
"""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MULTIPART_THRESHOLD = 8 * 1024 * 1024
# Errors worth another try: the network, throttling, and the server's own transient failures.
TRANSIENT_NETWORK = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)
TRANSIENT_CODES = {"RequestTimeout", "RequestTimeTooSkewed", "SlowDown", "Throttling", "ThrottlingException",
                   "InternalError", "ServiceUnavailable", "500", "502", "503", "504"}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key/part` -> ("bucket", "key/part"). The key may be empty (a bucket root)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// uri: {uri!r}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"s3 uri without a bucket: {uri!r}")
    return bucket, key


def endpoint_url() -> str | None:
    return os.environ.get("DATAENGINE_S3_ENDPOINT_URL") or None


def s3_client(max_attempts: int = 5, connect_timeout: float = 5.0, read_timeout: float = 60.0):
    """A boto3 S3 client configured from the environment, with botocore's adaptive retries.

    Path-style addressing when an endpoint is given: local servers (moto, MinIO) have no per-bucket DNS names.
    Credentials are left to boto3's own chain (environment first), never read or logged here.
    """
    url = endpoint_url()
    region = os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    cfg = Config(region_name=region, retries={"max_attempts": max_attempts, "mode": "adaptive"},
                 connect_timeout=connect_timeout, read_timeout=read_timeout, signature_version="s3v4",
                 s3={"addressing_style": "path" if url else "auto"})
    log.debug("S3 client: endpoint %s, region %s", url or "AWS default", region)
    return boto3.session.Session().client("s3", endpoint_url=url, config=cfg)


def is_transient(exc: BaseException) -> bool:
    """Whether an error may go away on its own (network, throttling, 5xx), so retrying makes sense."""
    if isinstance(exc, TRANSIENT_NETWORK):
        return True
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return err.get("Code") in TRANSIENT_CODES or status in TRANSIENT_CODES
    return False


def with_retries(fn: Callable[[], T], what: str, attempts: int = 4, base_delay: float = 0.5,
                 max_delay: float = 8.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `fn`, retrying transient errors with exponential backoff and jitter; others are raised at once.

    Why on top of botocore's retries: a managed transfer (multipart upload) can fail as a whole after botocore
    gave up on one part; retrying the whole transfer is what makes a staging run finish.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - filtered by is_transient
            if attempt == attempts or not is_transient(exc):
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            log.warning("%s failed (%s: %s); retry %d/%d in %.1f s", what, type(exc).__name__, exc, attempt,
                        attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def upload_file(path: str | Path, uri: str, client=None, multipart_threshold: int = MULTIPART_THRESHOLD,
                content_type: str | None = None, attempts: int = 4, base_delay: float = 0.5) -> str:
    """Upload a local file to `uri` (multipart above `multipart_threshold` bytes), retrying transient errors.

    Returns the uri. The multipart chunk size follows the threshold, so large files go up in parallel parts.
    """
    client = client or s3_client()
    bucket, key = parse_s3_uri(uri)
    if not key or key.endswith("/"):
        raise ValueError(f"upload target needs an object key, got {uri!r}")
    config = TransferConfig(multipart_threshold=multipart_threshold,
                            multipart_chunksize=max(5 * 1024 * 1024, multipart_threshold), max_concurrency=4)
    extra = {"ContentType": content_type} if content_type else None
    with_retries(lambda: client.upload_file(str(path), bucket, key, ExtraArgs=extra, Config=config),
                 f"upload of {path} to {uri}", attempts=attempts, base_delay=base_delay)
    return uri


def put_bytes(data: bytes, uri: str, client=None, attempts: int = 4, base_delay: float = 0.5) -> str:
    """Write a small object (a marker, a manifest) in one request, retrying transient errors."""
    client = client or s3_client()
    bucket, key = parse_s3_uri(uri)
    with_retries(lambda: client.put_object(Bucket=bucket, Key=key, Body=data), f"put of {uri}",
                 attempts=attempts, base_delay=base_delay)
    return uri


def delete_object(uri: str, client=None) -> None:
    client = client or s3_client()
    bucket, key = parse_s3_uri(uri)
    with_retries(lambda: client.delete_object(Bucket=bucket, Key=key), f"delete of {uri}")


def exists(uri: str, client=None) -> bool:
    client = client or s3_client()
    bucket, key = parse_s3_uri(uri)
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def presign_get(uri: str, expires_in: int = 7 * 24 * 3600, client=None) -> str:
    """A URL anyone can GET the object with, until it expires (default 7 days, the SigV4 maximum)."""
    client = client or s3_client()
    bucket, key = parse_s3_uri(uri)
    return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                         ExpiresIn=expires_in)


def read_s3_uri(uri: str, client=None) -> bytes:
    """The bytes of an s3:// object (`storage.read_uri` reads s3:// image uris through it)."""
    client = client or s3_client()
    bucket, key = parse_s3_uri(uri)
    try:
        return with_retries(lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read(), f"read of {uri}")
    except client.exceptions.NoSuchKey:
        # Gone since it was listed: the object's problem, like a missing file, not the network's.
        raise FileNotFoundError(f"no such object: {uri}") from None


def list_keys(uri: str, client=None, start_after: str | None = None) -> Iterator[str]:
    """Every key under an s3:// prefix, in the server's (lexicographic) order, across pages; only those after
    `start_after` when given (S3 starts the listing there: the keys before it are never sent)."""
    client = client or s3_client()
    bucket, prefix = parse_s3_uri(uri)
    extra = {"StartAfter": start_after} if start_after else {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, **extra):
        for obj in page.get("Contents", []):
            yield obj["Key"]
