"""The detection and training stages' configs: each default defined once, here; the CLI's flags, the flows'
parameters and the deployments derive from them. No torch here, so `dataengine --help` stays fast."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DetectConfig:
    """How the detection stage runs over new imagery (its one config)."""

    batch_size: int = field(default=4, metadata={"help": "images per forward pass"})
    commit_every: int = field(default=32, metadata={
        "help": "images whose detections and features are written, then marked done (a journaled commit point), "
                "together; a killed run redoes at most this many"})
    min_score: float = field(default=0.25, metadata={
        "help": "detections below this score are not stored (pre-annotations have their own threshold)"})
    feature_dtype: str = field(default="float32", metadata={
        "help": "how feature vectors are stored: float16 halves the feature database at an archive's scale "
                "(exact recall@10 against float32 in benchmarks/results/nightly.json); a model's layer keeps the "
                "dtype its first vectors had", "choices": ["float32", "float16"]})


@dataclass(frozen=True)
class TrainConfig:
    """One training run (the training stage's config; fine-tuning arms add `FinetuneConfig`)."""

    steps: int = field(default=200, metadata={
        "help": "optimiser steps (200: about 6-7 minutes for the small preset on 2 CPU cores)"})
    batch_size: int = field(default=4, metadata={"help": "images per step"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    optimizer: str = field(default="adamw", metadata={
        "help": "adamw (training from scratch) or sgd (momentum 0.9: a fine-tuning step moves each weight in "
                "proportion to its gradient, where AdamW's first steps move every weight by about the learning "
                "rate)", "choices": ["adamw", "sgd"]})
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    max_minutes: float | None = field(default=None, metadata={"help": "stop early when this time is up"})
    grad_clip: float = 10.0
    seed: int = field(default=0, metadata={"help": "seed of the data order, augmentation and initialisation"})
    threads: int | None = None
    patience: int | None = field(default=None, metadata={
        "help": "train to the plateau: check bbox mAP on the val split every --check-every steps, stop after this "
                "many checks without a gain, keep the best weights (default: off, train every step)"})
    check_every: int = field(default=20, metadata={"help": "steps between val checks when --patience is set"})


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning recipe of the retrain-and-compare arms (every arm alike).

    The defaults were chosen with benchmarks/finetune_bench.py (results/finetune.json): two scene draws of the demo,
    three training seeds. At 30 steps (the benchmark's recipe; the demo's arms run 20), lr 2e-4, hard negatives
    0.25 and new images drawn 4x as often, no arm fell below its seed model on the query subset beyond twice the seed sd, the mined and random arms'
    localisation false positives did not rise, and the mined arm removed 89-95 % of the background false
    positives. Early stopping on held-out new images (`holdout`) is here but off: ten held-out images decided too
    noisily, kept the seed in 9 of 12 runs and gave up most of that cut. (Earlier, on one draw: lr 5e-4 cost even
    the control arm 0.01 mAP; hard negatives at 0.5 cut background FPs but cost 0.02-0.03 mAP.)"""

    steps: int = field(default=60, metadata={"help": "fine-tuning steps per arm and training seed"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    oversample: float = field(default=4.0, metadata={"help": "new images are drawn this many times as often"})
    hard_negatives: float = field(default=0.25, metadata={
        "help": "share of each image's background quota given to the box head's highest-scoring background "
                "proposals (0 turns hard-negative mining off)"})
    optimizer: str = field(default="adamw", metadata={"help": "adamw or sgd (momentum 0.9)",
                                                       "choices": ["adamw", "sgd"]})
    freeze: str = field(default="none", metadata={
        "help": "what the fine-tuning holds still: none, backbone (the convolutional body) or backbone+fpn",
        "choices": ["none", "backbone", "backbone+fpn"]})
    seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={
        "help": "training seeds per arm: their spread is the noise a difference must clear"})
    control_seeds: tuple[int, ...] | None = field(default=None, metadata={
        "help": "training seeds of the control arm (default: --seeds). The control only checks that the seed model "
                "is at its plateau; the verdict compares the mined and random arms, which need the seeds"})
    workers: int = field(default=1, metadata={
        "help": "training runs at once, each in a process of its own with an equal share of the CPU threads "
                "(1: one after another in this process). On 2 cores two demo arm runs (20 steps, then 200 test "
                "images scored) took 110 s side by side with 1 thread each, 135 s one after another with 2"})
    holdout: float = field(default=0.0, metadata={
        "help": "share of the new labelled images (those the starting model never saw) held out, chosen by file "
                "name and the same in every run and round, to check the model on while it trains; the best "
                "check's weights are kept, the starting weights included, so a run never ends worse there than it "
                "began (0 turns early stopping off)"})
    check_every: int = field(default=10, metadata={"help": "steps between checks on the held-out images"})
    patience: int | None = field(default=None, metadata={
        "help": "stop after this many checks without improvement (None: train every step, keep the best)"})
    check_start: bool = field(default=True, metadata={
        "help": "count the starting weights as the first check, so a run never ends worse there than it began. "
                "Off, the run keeps its best check after training starts: a short fine-tune dips before it "
                "gains, and on real photographs every arm's first checks fell below the seed, so with the start "
                "counted every arm ended as the seed (benchmarks/results/real-attempts)"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if self.control_seeds is not None:
            object.__setattr__(self, "control_seeds", tuple(self.control_seeds))
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")

    def seeds_of(self, arm: str) -> tuple[int, ...]:
        """The training seeds an arm is fine-tuned with."""
        return self.control_seeds if arm == "control" and self.control_seeds is not None else self.seeds

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(steps=self.steps, lr=self.lr, warmup_steps=max(1, self.steps // 10), seed=seed,
                           optimizer=self.optimizer)
