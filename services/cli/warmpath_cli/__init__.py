"""The `warmpath` command line: generate, route, models, and a local mesh launcher."""
