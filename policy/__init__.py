"""Domain policy of the help desk: labels, SLA deadlines, replies, review rules, routing costs.

No FastAPI and no torch here: the HTTP service, the CLI and a Python user apply the same policy.
"""
