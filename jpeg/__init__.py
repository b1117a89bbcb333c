"""jpeg."""
