"""`python -m xmanager.cli`, the same as the `xmanager` command."""

from xmanager.cli.main import run

run()
