"""The launcher daemon: runs jobs described by the `xmanager.launcher.v1` contract and records
everything about them in a durable store."""
