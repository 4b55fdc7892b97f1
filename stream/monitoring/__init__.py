"""Monitoring: feedback join, windowed accuracy, online drift detection, metrics and alerts.

Pure-python core (stats, join, accuracy, drift, core) with a thin Faust layer (app).
"""
