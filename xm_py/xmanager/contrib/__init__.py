"""Helpers built on the launch-script API, as in XManager's `xmanager.contrib`."""
