"""The engine's jobs, as plain functions: each brings a model and the feature database together.

- `detect`: run the model over images and write detections, feature vectors and processed marks to the store;
- `experiment`: the mined / random / control arms fine-tuned from one seed and scored (retrain-and-compare);
- `retrain`: a candidate on everything labelled so far, judged by the gate, promoted when it passes;
- `label_folds`: fold models that judge each labelled image by a model that never trained on it;
- `search`: query by example: the model's vector of one image (or of a box in it) searches the pool index;
- `context`: one store connection and one loaded model per process, and the registry lookups the jobs share.

`tasks/` wraps them as Prefect tasks (retries, caching, tags); tests and benchmarks call them directly.
"""
