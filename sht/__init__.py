"""The ``sht`` command: one entry point for node, store, console and demo."""
