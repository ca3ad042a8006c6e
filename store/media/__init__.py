"""Segment files and what is made from them: layout, thumbnails, exported clips."""
