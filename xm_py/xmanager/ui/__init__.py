"""The web dashboard (`xmanager ui`): a browser view of the daemon, as one more gRPC client.

It never reads the store: every page is built from the daemon's public API (`xmanager.client`).
`server.serve` runs it; `app.create_app` builds the ASGI application (tests use it directly).
"""
