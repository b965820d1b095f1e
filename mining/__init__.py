"""Mining hard cases: the model's errors on labelled images become queries, their nearest neighbours in the
unlabelled pool become a labelling selection, and the retrain-and-compare experiment says whether it counted.

`config` (MatchConfig, MiningConfig), `errors` (typing against ground truth, recorded in fdb), `queries`,
`selection` (mined and random arms, the mining job, the nightly state key), `montage`, `compare` (the experiment's
design and results) and `report`. Mining reads and writes through `fdb/` and never runs a model: the model's
outputs reach it through the store (or, in the experiment, through a consumer of an inference pass).
"""
