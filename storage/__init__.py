"""The ground floor for bytes: what lies behind an image uri (a local path, `file://`, or `s3://`), and S3 access
with retries. Both the feature database (ingest) and the annotation export (staging) stand on it; it stands on
nothing of the project."""

from storage.uris import IMAGE_SUFFIXES, Listing, list_images, list_images_since, read_uri, the_files_fault

__all__ = ["IMAGE_SUFFIXES", "Listing", "list_images", "list_images_since", "read_uri", "the_files_fault"]
