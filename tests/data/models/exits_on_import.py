"""A model file that calls sys.exit(0) while it is imported (bad-input tests)."""
import sys

sys.exit(0)


def build_model():
    pass
