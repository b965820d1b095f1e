"""gaze data engine: active learning for object detection and instance segmentation.

The work lives in the design card's folders (`detectors/`, `fdb/`, `annotation_export/`, `tasks/`, `flows/`);
this package holds only what ties them together: configuration and the `dataengine` command line.
"""

__version__ = "0.1.0"
