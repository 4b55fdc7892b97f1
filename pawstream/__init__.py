"""pawstream: event-driven image classification on Kafka (shared kernel).

This package holds what the stream worker, producers, API and training share: settings, event
schemas, Kafka client helpers, the local broker and the vision model with its transforms.
Importing it has no side effects.
"""

__version__ = "0.1.0"
