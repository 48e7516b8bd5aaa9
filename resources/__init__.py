"""Everything that talks to the outside world: lake, landing zone, LiteLLM, CloudZero."""
