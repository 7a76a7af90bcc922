"""The training batch loader: endless seeded batches from an in-memory dataset, exactly resumable."""

from __future__ import annotations

import torch

from atelier.data.dataset import ImageDataset
from atelier.errors import DataError

__all__ = ["BatchLoader"]


class BatchLoader:
    """Endless seeded batches with an exactly restorable position.

    Epoch ``e`` visits the images in ``randperm(N)`` drawn from a generator seeded with
    ``(seed, e)``, so the data order depends only on the seed and the position ``(epoch, index)``:
    saving those two integers is enough to resume the stream bit for bit. A trailing partial batch is
    dropped (every batch has the same size, as BatchNorm statistics prefer).

    Augmentation (random ``crop`` to a square size, horizontal flips) draws from a generator seeded by
    the same position, and applies to all channels of an image at once: for paired data, stored as
    input and target stacked on the channel axis, both halves get the same crop and flip.

    Data-parallel training: ``batch_size`` is the *global* batch and process ``rank`` of ``world_size``
    gets rows ``[rank * b, (rank + 1) * b)`` of it, ``b = batch_size / world_size`` (a distributed
    sampler over the same seeded permutation). Augmentation is drawn for the global batch and then
    sliced, so the union of the ranks' batches is exactly the one-process batch, image for image and
    flip for flip; the position is global too, so a checkpoint resumes on any number of processes.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, seed: int, hflip: bool = False,
                 crop: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        if batch_size > len(dataset):
            raise DataError(f"batch size {batch_size} is larger than the dataset ({len(dataset)} images); "
                            f"lower --batch-size")
        if batch_size % world_size:
            raise DataError(f"batch size {batch_size} is the global batch and must split evenly over "
                            f"{world_size} processes; use a multiple of {world_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.local_batch = batch_size // world_size
        self.seed = seed
        self.hflip = hflip
        if crop is not None and crop > dataset.resolution:
            raise DataError(f"crop {crop} is larger than the images ({dataset.resolution} px)")
        self.crop = crop if crop != dataset.resolution else None
        self.epoch = 0
        self.index = 0
        self._perm: torch.Tensor | None = None

    def _permutation(self) -> torch.Tensor:
        if self._perm is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._perm = torch.randperm(len(self.dataset), generator=g)
        return self._perm

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next batch: float ``(B, C, H, W)`` in [-1, 1] and labels (or None)."""
        if self.index + self.batch_size > len(self.dataset):
            self.epoch, self.index, self._perm = self.epoch + 1, 0, None
        idx = self._permutation()[self.index : self.index + self.batch_size]
        self.index += self.batch_size
        mine = slice(self.rank * self.local_batch, (self.rank + 1) * self.local_batch)
        x = self.dataset.images[idx[mine]]
        if self.crop is not None or self.hflip:
            g = torch.Generator().manual_seed(self.seed * 7_919 + self.epoch * 1_000_003 + self.index)
            if self.crop is not None:
                span = self.dataset.resolution - self.crop + 1
                offsets = torch.randint(0, span, (len(idx), 2), generator=g)[mine].tolist()
                x = torch.stack([img[:, y : y + self.crop, x0 : x0 + self.crop] for img, (y, x0) in zip(x, offsets,
                                                                                                        strict=True)])
            if self.hflip:
                flip = (torch.rand(len(idx), generator=g) < 0.5)[mine]
                x[flip] = x[flip].flip(-1)
        x = x.float().div_(127.5).sub_(1.0)
        labels = self.dataset.labels[idx[mine]] if self.dataset.labels is not None else None
        return x, labels

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index, self._perm = int(state["epoch"]), int(state["index"]), None
