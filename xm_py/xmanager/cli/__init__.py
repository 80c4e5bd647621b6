"""The `xmanager` command-line interface."""
