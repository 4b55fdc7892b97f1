"""The monitor (`pawstream monitor`): feedback join, windowed accuracy, online drift detection.

Pure-python core (stats, join, accuracy, drift, core) with a thin Faust layer (``main``).
"""
