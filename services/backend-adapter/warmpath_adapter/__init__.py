"""backend-adapter: turns Warmpath Generate calls into inference-server API calls."""
