"""One module per job kind: load inputs from ``db``, call ``core``, store outputs keyed by job id."""
