"""The node's links to the store: segment upload, the control link, the store's public key."""
