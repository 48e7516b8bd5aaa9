"""The webhook receiver for LiteLLM's generic_api callback (writes the landing zone)."""
