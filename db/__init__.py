"""The persistence room: tables, engine and sessions, migrations and the blob store.

It imports nothing else of ChatEdit; callers pass in URLs and paths (the Settings object
lives in ``core``), so the schema can be used and tested on its own.
"""
