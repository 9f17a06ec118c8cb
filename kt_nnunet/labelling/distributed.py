"""A labelling launched by torchrun: the torch.distributed group whose ranks are the labelling's parts.

Without torchrun (``WORLD_SIZE`` unset or 1) the group is a no-op of one rank, so the labeller runs the same
code either way.
"""
from __future__ import annotations

import os
from typing import Callable, TypeVar

from kt_nnunet.labelling.errors import LabellingError

T = TypeVar("T")


class DistributedGroup:
    """torch.distributed (gloo on CPU; nccl when ``KT_NNUNET_DIST_BACKEND=nccl`` on CUDA) under torchrun; a
    no-op group otherwise. As a context manager it ends the process group it started."""

    def __init__(self, rank: int = 0, world_size: int = 1, created: bool = False):
        self.rank, self.world_size, self.created = rank, world_size, created

    @classmethod
    def start(cls, distributed) -> "DistributedGroup":
        """``distributed``: ``"auto"`` (a group when torchrun's ``WORLD_SIZE`` is above 1), True or False."""
        import torch
        import torch.distributed as dist

        wanted = (int(os.environ.get("WORLD_SIZE", "1")) > 1) if distributed == "auto" else bool(distributed)
        if not wanted:
            return cls()
        if not dist.is_available():
            raise LabellingError("torch.distributed is not available in this torch build; use --num-parts instead")
        created = False
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and os.environ.get("KT_NNUNET_DIST_BACKEND") == "nccl" \
                else "gloo"
            dist.init_process_group(backend=backend)
            created = True
        return cls(dist.get_rank(), dist.get_world_size(), created)

    def __enter__(self) -> "DistributedGroup":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def first_on_rank_zero(self, call: Callable[[], T]) -> T:
        """``call()`` on rank 0, then (after a barrier) on the other ranks: rank 0 sets up what they join."""
        if self.rank == 0:
            result = call()
        self.barrier()
        if self.rank != 0:
            result = call()
        return result

    def close(self) -> None:
        if self.created:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.created = False
