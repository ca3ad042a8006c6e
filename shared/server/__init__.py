"""The one front end of every server (node, store, ``sht relay``): routes, the handshake's checks, open sessions."""
