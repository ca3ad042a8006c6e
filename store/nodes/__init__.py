"""The fleet: which nodes are up, their health, their control links."""
