"""XManager's contributed helpers that concern this launcher's executors."""
