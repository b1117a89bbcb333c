"""Bottom layer shared by every part: the error family (errors), atomic file writes (files), the base of
saved configs (config) and the one seed mixer (seeding)."""
