"""The operator's console: a Textual app (``console.app``) over the store's query API (``console.client``)."""
