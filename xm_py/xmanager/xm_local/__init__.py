"""Local-daemon executors and experiment client for launch scripts."""
