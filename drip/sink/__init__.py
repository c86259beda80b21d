"""A local stand-in for SendGrid's v3 mail send, for development, tests and benchmarks.

``Sink`` runs it in a thread (``with Sink(record=True) as sink: ...``);
``serve`` runs it until Ctrl-C. See ``drip.sink.control`` for the control API.
"""

from drip.sink.server import Sink, serve

__all__ = ["Sink", "serve"]
