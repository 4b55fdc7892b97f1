"""The local stack: a supervisor for the broker, workers, API and monitor (`pawstream up`, the demo).

Kept import-free: ``pawstream.services.launch`` runs before every child and must start fast.
"""
