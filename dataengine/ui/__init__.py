"""`dataengine ui`: the review app in the browser over the feature database (see `app.py`).

`views` holds what each page shows as plain data, `crops` the pictures (cached on disk by content), `app` the
FastAPI pages and JSON API, `server` the command that serves them. It runs no model: it imports neither torch nor
the detectors, so it starts in a second beside a running night.
"""
