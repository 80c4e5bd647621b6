"""Runs test_launch_tools.py as a Bazel py_test."""

import os
import sys

import pytest

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    test = os.path.join(here, "test_launch_tools.py")
    sys.exit(pytest.main([test, "-q", "-p", "no:cacheprovider", "-c", os.devnull]))
