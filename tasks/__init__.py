"""Thin Prefect tasks over the plain functions of jobs/, detectors/, fdb/, mining/ and annotation_export/, one
module per stage of the loop:

- `detect`: list the night's new images, run the model over them (and over the labelled set) into fdb;
- `models`: which model a run uses, and handing production over to another;
- `index`: the pool index mining searches, brought up to date before mining, rebuilt or merged;
- `mine`: the model's errors on the labelled set, the label errors, the hard cases they point at;
- `labelling`: batches out to the labelling team, their labels back;
- `night`: what a scheduled night records, so a second run or a crashed one finishes the same night;
- `retrain`: a candidate retrained and gated, the arms compared and reported;
- `demo`: the demo's scenes, seed model and oracle labeller.

This is where a model's output meets the store (detect -> write -> mark processed, `jobs.detect`), and where
every other step of the loop becomes a task the flows call. Tasks take and return plain or typed values (a
`StoreConfig`, model versions, paths, stage configs), never an open connection or a loaded model: each process
opens one connection and loads a model once (`jobs.context`), so tasks can run in other processes or on other
machines (Dask workers, see flows/runners.py). Retries with backoff cover database, S3 and file I/O
(`tasks.retries`); every task is idempotent, so a retry or a re-run never duplicates a record.
"""
