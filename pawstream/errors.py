"""The one base class of pawstream's own exceptions.

Like faust's ``FaustError`` and quix-streams' ``QuixException``: ``except PawstreamError`` catches
every failure the project raises on purpose and nothing from a library or a bug. Each subclass
keeps the builtin base its callers already catch (``ValueError``, ``RuntimeError``) as a second
base. One that ends as a dead letter carries the ``reason`` (a ``DeadLetterReason``) it maps to;
see :class:`pawstream.schemas.EventError`.
"""

from __future__ import annotations


class PawstreamError(Exception):
    """The base class of every exception pawstream defines."""
