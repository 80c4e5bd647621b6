"""Generated Python modules of the launcher contract (proto/xmanager/launcher)."""
