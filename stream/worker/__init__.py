"""The classification worker (`pawstream worker`): images in, predictions or dead letters out.

``main`` is the entry point; ``faust_app`` is the thin Faust layer; ``processor`` is the pure batch
logic (no Faust inside) that turns one micro-batch of records into outputs.
"""
