"""A small binary for the launch tests: prints its arguments."""

import sys

print("hello from Bazel:", *sys.argv[1:])
