"""Keeping the store true over time: retention, garbage, summaries, check, rebuild, lock."""
