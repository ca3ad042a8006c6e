"""The operator's console: a Textual app (``console.app``) over the store's query API (``shared.query_client``)."""
