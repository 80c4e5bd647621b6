"""Runs this directory's pytest suite as a Bazel py_test."""

import os
import sys

import pytest

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)  # the suite imports its helper modules by plain name
    sys.exit(pytest.main([here, "-q", "-p", "no:cacheprovider", "-c", os.devnull]))
