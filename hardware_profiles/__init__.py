"""Bundled hardware profiles (installed as the package ``archcost.profiles``)."""
