"""Datasets made on disk for the commands: the synthetic street scenes and PennFudanPed as COCO. Plain functions,
no Prefect run and no store."""

from __future__ import annotations

from pathlib import Path

from detectors.synthetic import generate


def synthetic_dataset(out_dir: str, n_train: int, n_val: int, n_pool: int, seed: int = 0,
                      train_districts: tuple[int, ...] | None = None, boxes_only: bool = False, n_test: int = 0,
                      hard_share: float | None = None, n_test_tail: int | None = None) -> dict[str, Path]:
    """The synthetic street scenes as a COCO dataset directory (`detectors.synthetic.generate`): {split: json}."""
    return generate(out_dir, n_train, n_val, n_pool, seed=seed, train_districts=train_districts,
                    boxes_only=boxes_only, n_test=n_test, hard_share=hard_share, n_test_tail=n_test_tail)


def pennfudan_dataset(src: str, out_dir: str, n_train: int = 120, seed: int = 0) -> dict[str, Path]:
    """PennFudanPed as a COCO dataset directory split into train / val by seed: {split: json}."""
    from detectors.pipeline import convert_pennfudan  # torch comes with it: only this command pays for it

    return convert_pennfudan(src, out_dir, n_train=n_train, seed=seed)
