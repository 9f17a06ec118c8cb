"""Run nnU-Net's dataset checks, fingerprinting and preprocessing in this process, without worker pools.

nnU-Net starts a ``spawn`` process pool for each of the three, and every spawned worker imports torch and
nnunetv2 again. On a few CPU cores and a small dataset that start-up is most of the cost: a 16-slice demo
dataset took 11.7 s to check and fingerprint and 3.9 s to preprocess with 2 workers. An experiment
preprocesses one new dataset per teacher label set and fine-tune subset, and per repeat, so kt-nnunet runs
these steps serially when it asks for one process (``num_processes=1``), with nnU-Net's own functions.

:func:`serial_pools` swaps the ``multiprocessing`` module those three nnU-Net modules see for one whose
``spawn`` pool runs each task at once in the calling process (results, ``ready()``/``get()`` and the
liveness checks behave as nnU-Net expects). Nothing else is patched, and the swap is undone on exit.
"""
from __future__ import annotations

import contextlib
import importlib
import multiprocessing
from typing import Iterator

POOL_USING_MODULES = ("nnunetv2.experiment_planning.verify_dataset_integrity",
                      "nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor",
                      "nnunetv2.preprocessing.preprocessors.default_preprocessor")


class _Done:
    def __init__(self, value):
        self.value = value

    def ready(self) -> bool:
        return True

    def get(self, timeout=None):
        return self.value


class _Worker:
    @staticmethod
    def is_alive() -> bool:
        return True


class SerialPool:
    """The part of ``multiprocessing.Pool`` those modules use (``starmap``, ``starmap_async``, ``_pool``), computed
    eagerly in this process."""

    def __init__(self, processes=None, *args, **kwargs):
        self._pool = [_Worker()]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def starmap(self, function, iterable, chunksize=None):
        return [function(*arguments) for arguments in iterable]

    def starmap_async(self, function, iterable, chunksize=None, *args, **kwargs):
        return _Done(self.starmap(function, iterable))


class _SerialContext:
    Pool = SerialPool


class _SerialMultiprocessing:
    """Stands in for the ``multiprocessing`` module inside the patched nnU-Net modules."""

    def __getattr__(self, name):
        return getattr(multiprocessing, name)

    @staticmethod
    def get_context(method=None):
        return _SerialContext()


@contextlib.contextmanager
def serial_pools(enabled: bool = True) -> Iterator[None]:
    """Within the block, nnU-Net's checks, fingerprinting and preprocessing run without worker processes."""
    if not enabled:
        yield
        return
    modules = [importlib.import_module(name) for name in POOL_USING_MODULES]
    saved = [module.multiprocessing for module in modules]
    for module in modules:
        module.multiprocessing = _SerialMultiprocessing()
    try:
        yield
    finally:
        for module, original in zip(modules, saved):
            module.multiprocessing = original
