"""Bottom layer shared by every part: the error family and atomic file writes."""
