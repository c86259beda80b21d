"""A local stand-in for SendGrid's v3 mail send, for development, tests and benchmarks.

``Sink`` runs it in a thread (``with Sink(record=True) as sink: ...``);
``serve`` runs it until Ctrl-C. See ``drip_devtools.sendgrid_sink.control`` for the control API.
"""

from drip_devtools.sendgrid_sink.server import Sink, serve

__all__ = ["Sink", "serve"]
