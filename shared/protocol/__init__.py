"""The wire protocol, sans-I/O: bytes in, typed events out; no sockets, no asyncio.

- ``live``: the live stream framing served at ``/live/{camera}``.
- ``ingest``: segments from node to store at ``/ingest``.
"""

from shared.protocol.errors import ProtocolError

__all__ = ["ProtocolError"]
