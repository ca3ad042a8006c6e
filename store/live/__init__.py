"""Live video for many viewers: the relay, in the store and as `sht relay`."""
