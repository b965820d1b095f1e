"""Mining hard cases: the model's errors on labelled images become queries, their nearest neighbours in the
unlabelled pool become a labelling selection, and the retrain-and-compare experiment says whether it counted.

`config` (MatchConfig, MiningConfig, LabelErrorConfig), `matching` (detections to labels), `model_errors` (typing
against ground truth, recorded in fdb, and what each type costs), `label_errors` (the labels' own errors, and the
judge's check on planted ones), `queries`, `strategies` (one module per selection strategy), `submodular` (the
targeted strategy's mutual information), `selection` (the mining step, the nightly state key), `similar` (query by
example), `montage`, `compare` (the experiment's design and results), `evaluation`, `gate` and `report`. Mining reads and writes through `fdb/` and never runs a model: the model's
outputs reach it through the store (or, in the experiment, through a consumer of an inference pass).
"""
