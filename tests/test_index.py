"""Vector indexes (fdb.vector_index): exact reference, Annoy + re-ranking recall, query checks, save/load, atomic swap."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fdb import vector_index as fi
from fdb.vector_index import (
    AnnoyIndex,
    ExactIndex,
    HnswIndex,
    IndexShapeError,
    IndexSpec,
    LayeredIndex,
    build_index,
    list_versions,
    load_current,
    load_index,
    prune,
    read_current,
    save_index,
)
from fdb.vector_index.synthetic import FCLikeGenerator

N, DIM = 5000, 128
SMALL_ANNOY = dict(proj_dim=32, n_trees=10, search_k=800, rerank=50, pca_samples=5000, n_jobs=1)
SMALL_HNSW = dict(M=8, ef_construction=64, ef=100, threads=1)


def make_ids(n: int, offset: int = 0) -> np.ndarray:
    return np.array([(i + offset).to_bytes(12, "big") for i in range(n)], dtype="S12")


@pytest.fixture(scope="module")
def data():
    gen = FCLikeGenerator(dim=DIM, latent=32, clusters=16, seed=3)
    return gen.generate(N), gen.generate(200, stream=1), make_ids(N)


@pytest.fixture(scope="module")
def exact(data):
    vectors, _, ids = data
    return ExactIndex("m1", "fc7", name="pool").build(vectors, ids)


@pytest.fixture(scope="module")
def annoy_index(data):
    vectors, _, ids = data
    return AnnoyIndex("m1", "fc7", name="pool", **SMALL_ANNOY).build(vectors, ids)


def brute_force(base, queries, k, metric):
    base, queries = base.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        d = 1 - (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ \
            (base / np.linalg.norm(base, axis=1, keepdims=True)).T
    else:
        d = np.sqrt(((queries[:, None, :] - base[None, :, :]) ** 2).sum(-1))
    order = np.argsort(d, axis=1)[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


# ---------------------------------------------------------------------- exact
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_matches_numpy(data, metric):
    vectors, queries, ids = data
    base, q = vectors[:1500], queries[:40]
    # A small score budget forces many blocks, so the block-merge path is what is tested.
    index = ExactIndex("m1", "fc7", metric=metric, score_budget_mb=0.01).build(base, ids[:1500])
    got_ids, got_d = index.query(q, 10)
    want_rows, want_d = brute_force(base, q, 10, metric)
    np.testing.assert_array_equal(got_ids, ids[:1500][want_rows])
    np.testing.assert_allclose(got_d, want_d, rtol=1e-4, atol=2e-5)
    assert got_ids.dtype == np.dtype("S12") and got_d.dtype == np.float32


def test_exact_self_query_finds_itself(exact, data):
    vectors, _, ids = data
    got_ids, got_d = exact.query(vectors[:50], 5)
    np.testing.assert_array_equal(got_ids[:, 0], ids[:50])
    assert np.all(np.abs(got_d[:, 0]) < 1e-5)
    assert np.all(np.diff(got_d, axis=1) >= 0)  # nearest first


def test_padding_when_k_exceeds_n(data):
    vectors, queries, ids = data
    for backend in ("exact", "annoy"):
        params = SMALL_ANNOY if backend == "annoy" else {}
        index = build_index(vectors[:7], ids[:7], "m1", "fc7", backend=backend, **params)
        got_ids, got_d = index.query(queries[:3], 10)
        assert got_ids.shape == got_d.shape == (3, 10)
        assert set(got_ids[:, :7].ravel()) == set(ids[:7])
        assert np.all(got_ids[:, 7:] == b"") and np.all(np.isinf(got_d[:, 7:]))
        assert np.all(np.isfinite(got_d[:, :7]))


# ---------------------------------------------------------------------- annoy
def test_annoy_recall_against_exact(annoy_index, exact, data):
    _, queries, _ = data
    truth, truth_d = exact.query(queries, 10)
    found, found_d = annoy_index.query(queries, 10)
    assert recall(found, truth) >= 0.9
    # Re-ranked distances are original-space distances: where both found the same id, they agree.
    same = found[:, 0] == truth[:, 0]
    assert same.mean() > 0.8
    np.testing.assert_allclose(found_d[same, 0], truth_d[same, 0], atol=1e-5)


def test_annoy_single_and_batched_queries_agree(annoy_index, data):
    _, queries, _ = data
    batch_ids, batch_d = annoy_index.query(queries[:64], 10)  # >= 32 queries: the threaded path
    for i in range(0, 64, 9):
        ids_i, d_i = annoy_index.query(queries[i], 10)  # a 1-D query is one query
        np.testing.assert_array_equal(ids_i[0], batch_ids[i])
        np.testing.assert_allclose(d_i[0], batch_d[i])


def test_annoy_build_is_deterministic(data):
    vectors, queries, ids = data
    a = AnnoyIndex("m1", "fc7", **SMALL_ANNOY).build(vectors[:2000], ids[:2000])
    b = AnnoyIndex("m1", "fc7", **SMALL_ANNOY).build(vectors[:2000], ids[:2000])
    np.testing.assert_array_equal(a.query(queries, 10)[0], b.query(queries, 10)[0])


# ---------------------------------------------------------------------- hnsw: an index that grows
@pytest.mark.parametrize("graph", ["faiss", "hnswlib"])
def test_hnsw_recall_and_growth(exact, data, tmp_path, graph):
    vectors, queries, ids = data
    truth, truth_d = exact.query(queries, 10)
    grown = HnswIndex("m1", "fc7", proj_dim=32, graph=graph, **SMALL_HNSW).build(vectors[:3000], ids[:3000])
    grown.add(vectors[3000:4000], ids[3000:4000]).add(vectors[4000:], ids[4000:])  # two nights
    assert len(grown) == N and grown.spec.n == N
    found, found_d = grown.query(queries, 10)
    assert recall(found, truth) >= 0.9  # items added after the build are found like the first ones
    same = found[:, 0] == truth[:, 0]
    # Re-ranked against the float16 base: distances agree with exact search to float16 precision.
    np.testing.assert_allclose(found_d[same, 0], truth_d[same, 0], atol=2e-3)
    assert grown.spec.dtype == "float16"


@pytest.mark.parametrize("graph", ["faiss", "hnswlib"])
def test_hnsw_saved_growth_links_old_chunks(data, tmp_path, graph):
    vectors, queries, ids = data
    first = HnswIndex("m1", "fc7", proj_dim=32, graph=graph, **SMALL_HNSW).build(vectors[:4000], ids[:4000])
    v1 = save_index(first, tmp_path, "pool")
    loaded = load_current(tmp_path, "pool")
    before = loaded.spec.version
    loaded.add(vectors[4000:], ids[4000:])
    assert loaded.spec.version != before  # new content, new version: the old one stays as it was
    v2 = save_index(loaded, tmp_path, "pool")
    # The first night's chunk is the same file in both versions (hard-linked, not copied); only the new one is new.
    assert os.path.samefile(v1 / "base-00000.npy", v2 / "base-00000.npy")
    assert not (v1 / "base-00001.npy").exists() and (v2 / "base-00001.npy").exists()
    again = load_current(tmp_path, "pool")
    assert len(again) == N and len(load_index(v1)) == 4000
    np.testing.assert_array_equal(again.query(vectors[4990:], 1)[0][:, 0], ids[4990:])  # added rows find themselves


def test_a_faiss_graph_is_mapped_on_load_and_read_in_only_to_grow(data, tmp_path):
    vectors, queries, ids = data
    built = HnswIndex("m1", "fc7", proj_dim=32, **SMALL_HNSW).build(vectors[:4000], ids[:4000])
    assert built.spec.params["graph"] == "faiss"
    version = save_index(built, tmp_path, "pool")
    graph_bytes = (version / "hnsw.faiss").read_bytes()
    loaded = load_current(tmp_path, "pool")
    assert loaded._graph._mapped_from == version / "hnsw.faiss"  # mapped where it lies, not read
    for a, b in zip(built.query(queries, 10), loaded.query(queries, 10)):
        np.testing.assert_array_equal(a, b)  # the mapped graph answers as the one it was saved from
    loaded.add(vectors[4000:], ids[4000:])
    assert loaded._graph._mapped_from is None  # read into memory to take rows
    np.testing.assert_array_equal(loaded.query(vectors[4990:], 1)[0][:, 0], ids[4990:])
    assert (version / "hnsw.faiss").read_bytes() == graph_bytes  # the saved version is untouched


def test_a_pool_index_saved_before_faiss_held_graphs_loads_as_hnswlib(data, tmp_path):
    """Indexes written by an older version name no graph library in their spec: their graph is hnswlib's."""
    vectors, queries, ids = data
    old = HnswIndex("m1", "fc7", proj_dim=32, graph="hnswlib", **SMALL_HNSW).build(vectors[:3000], ids[:3000])
    version = save_index(old, tmp_path, "pool")
    spec = IndexSpec.from_json((version / "spec.json").read_text())
    del spec.params["graph"]
    (version / "spec.json").write_text(spec.to_json())
    loaded = load_current(tmp_path, "pool")
    assert loaded.spec.params["graph"] == "hnswlib"
    np.testing.assert_array_equal(loaded.query(queries, 10)[0], old.query(queries, 10)[0])
    loaded.add(vectors[3000:3100], ids[3000:3100])
    again_dir = save_index(loaded, tmp_path, "pool")
    assert load_index(again_dir).spec.params["graph"] == "hnswlib"  # grown, it keeps its library
    assert (again_dir / "hnsw.bin").exists() and not (again_dir / "hnsw.faiss").exists()
    with pytest.raises(ValueError, match="graph must be one of"):
        HnswIndex("m1", "fc7", graph="annoy")


def test_add_refuses_a_wrong_dimension_and_annoy_cannot_add(exact, annoy_index, data):
    vectors, _, ids = data
    with pytest.raises(IndexShapeError, match="holds 128-d"):
        build_index(vectors[:10], ids[:10], "m1", "fc7", backend="exact").add(np.ones((2, 64)), make_ids(2, N))
    with pytest.raises(NotImplementedError, match="rebuild"):
        annoy_index.add(vectors[:2], make_ids(2, N))
    small = build_index(vectors[:10], ids[:10], "m1", "fc7", backend="exact").add(vectors[10:20], ids[10:20])
    np.testing.assert_array_equal(small.query(vectors[10:20], 1)[0][:, 0], ids[10:20])


# ---------------------------------------------------------------------- query checks
@pytest.mark.parametrize("which", ["exact", "annoy"])
def test_dimension_mismatch_refused(which, exact, annoy_index):
    index = exact if which == "exact" else annoy_index
    with pytest.raises(IndexShapeError) as err:
        index.query(np.ones((2, 64), np.float32), 5)
    msg = str(err.value)
    assert "64-d" in msg and f"{DIM}-d" in msg and "'m1'" in msg and "'pool'" in msg


def test_model_version_mismatch_refused(exact):
    with pytest.raises(IndexShapeError, match="'m2'.*'m1'"):
        exact.query(np.ones((1, DIM), np.float32), 5, model_version="m2")
    with pytest.raises(IndexShapeError, match="'m2'.*'m1'"):
        exact.check_query(np.ones((1, DIM), np.float32), model_version="m2")
    exact.query(np.ones((1, DIM), np.float32), 5, model_version="m1")  # the right one passes


def test_non_finite_query_refused(exact):
    q = np.ones((1, DIM), np.float32)
    q[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        exact.query(q, 5)


# ---------------------------------------------------------------------- factory, spec, persistence
def test_auto_picks_backend_by_size(data):
    vectors, _, ids = data
    assert isinstance(build_index(vectors, ids, "m1", "fc7", **SMALL_ANNOY), ExactIndex)
    small_threshold = build_index(vectors, ids, "m1", "fc7", exact_threshold=1000, **SMALL_ANNOY, **SMALL_HNSW)
    assert isinstance(small_threshold, HnswIndex)  # the approximate backend that can grow
    assert small_threshold.params["proj_dim"] == 32 and small_threshold.params["M"] == SMALL_HNSW["M"]
    assert isinstance(build_index(vectors, ids, "m1", "fc7", backend="annoy", **SMALL_ANNOY), AnnoyIndex)
    with pytest.raises(ValueError, match="unknown index backend"):
        build_index(vectors, ids, "m1", "fc7", backend="faiss")


def test_spec_is_bson_friendly(annoy_index):
    bson = pytest.importorskip("bson")
    d = annoy_index.spec.as_dict()
    assert d["backend"] == "annoy" and d["dim"] == DIM and d["n"] == N and d["metric"] == "cosine"
    assert d["params"]["n_trees"] == 10 and d["projection"]["dim"] == 32
    assert bson.decode(bson.encode(d))["version"] == annoy_index.spec.version
    assert IndexSpec.from_json(annoy_index.spec.to_json()) == annoy_index.spec


@pytest.mark.parametrize("which", ["exact", "annoy"])
def test_save_load_round_trip(which, exact, annoy_index, data, tmp_path):
    index = exact if which == "exact" else annoy_index
    _, queries, _ = data
    before = index.query(queries, 10)
    index.save(tmp_path / "idx")
    loaded = load_index(tmp_path / "idx")
    assert type(loaded) is type(index) and loaded.spec == index.spec
    after = loaded.query(queries, 10)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert isinstance(loaded._base, np.memmap)  # original vectors are memory-mapped, not read in
    # A loaded index can be saved again (annoy re-writes from its mmap).
    loaded.save(tmp_path / "again")
    np.testing.assert_array_equal(load_index(tmp_path / "again").query(queries, 10)[0], before[0])


def test_atomic_swap_and_prune(data, tmp_path, monkeypatch):
    vectors, queries, ids = data
    v1 = ExactIndex("m1", "fc7").build(vectors[:1000], ids[:1000])
    v2 = ExactIndex("m1", "fc7").build(vectors[1000:2000], ids[1000:2000])
    assert v1.spec.version < v2.spec.version  # versions sort by creation time
    save_index(v1, tmp_path, "pool")
    assert read_current(tmp_path, "pool") == v1.spec.version
    save_index(v2, tmp_path, "pool")
    assert read_current(tmp_path, "pool") == v2.spec.version
    assert set(load_current(tmp_path, "pool").query(queries[:5], 3)[0].ravel()) <= set(ids[1000:2000])
    with pytest.raises(FileExistsError):
        save_index(v2, tmp_path, "pool")

    # A crash between writing the temp directory and renaming it: CURRENT still names v2, which still loads.
    v3 = ExactIndex("m1", "fc7").build(vectors[2000:3000], ids[2000:3000])

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    with monkeypatch.context() as m:
        m.setattr(os, "rename", crash)
        with pytest.raises(OSError, match="simulated"):
            save_index(v3, tmp_path, "pool")
    assert read_current(tmp_path, "pool") == v2.spec.version
    assert set(load_current(tmp_path, "pool").query(queries[:5], 3)[0].ravel()) <= set(ids[1000:2000])
    assert list_versions(tmp_path, "pool") == [v1.spec.version, v2.spec.version]
    assert not [p for p in (tmp_path / "pool").iterdir() if ".tmp-" in p.name]  # the temp dir was cleaned

    # A crash while replacing CURRENT: the new version directory exists, but CURRENT still names v2.
    with monkeypatch.context() as m:
        m.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="simulated"):
            save_index(v3, tmp_path, "pool")
    assert read_current(tmp_path, "pool") == v2.spec.version
    assert load_current(tmp_path, "pool").spec.version == v2.spec.version

    # A stale temp directory left by a hard crash is pruned; old versions beyond `keep` go, CURRENT never does.
    stale = tmp_path / "pool" / f"{v3.spec.version}.tmp-dead"
    stale.mkdir()
    os.utime(stale, (0, 0))
    removed = prune(tmp_path, "pool", keep=1)
    assert set(removed) == {v1.spec.version, stale.name}  # v3 is newest, v2 is current
    assert list_versions(tmp_path, "pool") == [v2.spec.version, v3.spec.version]
    assert load_current(tmp_path, "pool").spec.version == v2.spec.version


def test_fi_exports():
    assert set(fi.BACKENDS) == {"exact", "annoy", "hnsw"}


# ---------------------------------------------------------------------- layered: a main and a recent index as one
def test_layered_index_merges_both_parts_by_distance(data):
    vectors, queries, ids = data
    main = ExactIndex("m1", "fc7").build(vectors[:4000], ids[:4000])
    recent = ExactIndex("m1", "fc7").build(vectors[4000:], ids[4000:])
    whole = ExactIndex("m1", "fc7").build(vectors, ids)
    layered = LayeredIndex(main, recent)
    got_ids, got_dist = layered.query(queries, 10, model_version="m1")
    want_ids, want_dist = whole.query(queries, 10)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_dist, want_dist, atol=1e-6)
    assert len(layered) == N and layered.spec.n == N and layered.spec.backend == "exact+exact"
    assert layered.spec.version == f"{main.spec.version}+{recent.spec.version}"
    assert set(layered.ids) == set(ids)
    with pytest.raises(IndexShapeError):
        layered.check_query(queries[:, :64])


def test_layered_index_puts_the_main_first_on_a_tie_and_pads_as_any_index():
    base = np.eye(4, dtype=np.float32)
    main = ExactIndex("m1", "fc7").build(base[:2], make_ids(2))
    recent = ExactIndex("m1", "fc7").build(base[:2], make_ids(2, offset=100))  # the same vectors, other ids
    got_ids, got_dist = LayeredIndex(main, recent).query(base[:1], k=6)
    assert list(got_ids[0]) == [make_ids(1)[0], make_ids(1, 100)[0], make_ids(2)[1], make_ids(2, 100)[1],
                                b"", b""]
    assert np.isinf(got_dist[0, 4:]).all() and np.isfinite(got_dist[0, :4]).all()
    with pytest.raises(IndexShapeError):
        LayeredIndex(main, ExactIndex("m1", "fc6").build(base[:2], make_ids(2)))
