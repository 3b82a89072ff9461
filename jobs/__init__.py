"""The job queue, the worker process and the job handlers.

``jobs.queue`` is the only module that speaks SQL about jobs. The app uses its
submit/observe operations; the worker claims, runs and settles jobs through it.
"""
