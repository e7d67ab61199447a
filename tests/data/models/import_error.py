import not_a_real_package_archcost  # noqa: F401


def build_model():
    pass
