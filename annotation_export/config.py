"""The export stage's config: each default defined once, here; the CLI's flags, the flows' parameters and the
deployments derive from it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExportConfig:
    """How a selection becomes a labelling batch (the export stage's one config)."""

    min_score: float = field(default=0.5, metadata={
        "help": "pre-annotations below this score are left out (detections are stored from a lower one)"})
    only_accepted: bool = field(default=False, metadata={
        "help": "ship only the images a person accepted in the review app (default: every image not rejected)"})
    presign_expires: int = field(default=7 * 24 * 3600, metadata={
        "help": "seconds the presigned image URLs of an S3 batch stay valid (7 days, the SigV4 maximum)"})
