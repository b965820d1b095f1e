"""`dataengine ui`: the review app in the browser over the feature database (see `app.py`).

`views` holds what each page shows as plain data (`similar` the "find similar" page's; `lookups` the single records
a request names), `encoding` turns it into JSON, `schemas` and `schemas_curation` document its shapes, `routes` holds
the FastAPI routers (one module per page family: its JSON API and its pages), `deps` what they are handed, `access`
who may reach the app, `crops` the pictures (cached on disk by content), `app` puts it together, `server` the
command that serves it. It runs no model: it imports neither torch nor the detectors, so it starts in a second
beside a running night; "find similar" searches with the vectors the store already holds.
"""
