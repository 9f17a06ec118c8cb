"""Loaded by pytest through the ``pytest11`` entry point in every environment where kt-nnunet is installed, so it
only declares the ``slow`` marker the kit's training test carries (no unknown-marker warning, ``-m "not slow"``
works in a plugin package's own suite). It imports nothing heavy."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs of real nnU-Net commands (seconds to minutes on CPU)")
