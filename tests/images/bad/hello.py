"""A binary without third-party dependencies."""

print("hello")
