"""`sht store` admin commands and the signing keys."""
