"""Bundled runtime profiles (installed as the package ``archcost.runtime_profiles``)."""
