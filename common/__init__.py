"""Bottom layer shared by every part: the error family (errors), atomic file writes (files), and the base of
saved configs (config)."""
