"""`dataengine demo`: the loop on embedded data, as far as it is built.

Today it exercises the foundation: it starts (or attaches to) the embedded feature database, registers a few
generated images, writes their feature vectors and reads them back bit for bit, and prints what it did.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from fdb.images import ingest_images, list_images
from fdb.store import connect

DEMO_MODEL = "demo-foundation"
DEMO_LAYER = "image.random_projection"


def run_demo(quick: bool = False) -> int:
    fdb = connect()
    where = f"embedded mongod 127.0.0.1:{fdb.server.port} ({fdb.server.dbpath})" if fdb.server else "external MongoDB"
    print(f"feature database: {where}, database '{fdb.db.name}'")

    with tempfile.TemporaryDirectory(prefix="dataengine-demo-") as tmp:
        rng = np.random.default_rng(0)
        for i in range(8 if quick else 32):
            pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(Path(tmp) / f"scene_{i:03d}.png")
        (Path(tmp) / "scene_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
        uris = list_images(tmp)
        report = ingest_images(fdb, uris, source="demo", split="pool")
        print(f"ingested {len(uris)} files: {report}")
        for uri, reason in report.quarantined:
            print(f"  quarantined {Path(uri).name}: {reason}")

        images = list(fdb.images.find({"uri": {"$in": uris}, "status": "ok"}, {"uri": 1}))
        ids = [d["_id"] for d in images]
        # A fixed random projection of the pixels stands in for detector features until detectors/ exists.
        projection = np.random.default_rng(1).standard_normal((48 * 64 * 3, 1024)).astype(np.float32) / 100
        vectors = np.stack([np.asarray(Image.open(d["uri"]), np.float32).ravel() / 255 @ projection
                            for d in images]).astype(np.float32)
        written = fdb.write_features(DEMO_MODEL, DEMO_LAYER, ids, vectors, owner_kind="image")
        print(f"wrote {vectors.shape[0]} x {vectors.shape[1]}-d float32 features: {written}")
        got = fdb.read_vectors(DEMO_MODEL, DEMO_LAYER, filter={"image_id": {"$in": ids}})
        position = {oid: i for i, oid in enumerate(got.object_ids())}
        same = np.array_equal(got.vectors[[position[i] for i in ids]], vectors)
        print(f"read back {len(got)} vectors in one bulk read: {'identical' if same else 'DIFFERENT'} to what was written")
    print("records per collection:", {k: v for k, v in fdb.counts().items() if v})
    return 0 if same else 1
