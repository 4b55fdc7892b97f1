"""The streaming services: two separate processes that share no code but the kernel.

- ``stream.worker``: Faust workers that classify images in micro-batches (`pawstream worker`).
- ``stream.monitor``: the feedback join, windowed accuracy and drift (`pawstream monitor`).
"""
