"""The launcher daemon's client: connection, auto-start and process management."""
