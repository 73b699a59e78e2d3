"""The image pool of Shrivastava et al. (2017) used by CycleGAN to update discriminators on a history."""
from __future__ import annotations

import torch


class ImagePool:
    """Returns, per image, the new one or (with p=0.5) a stored one swapped for it."""

    def __init__(self, size: int = 50):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            img = img[None]
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif torch.rand(1).item() > 0.5:
                i = int(torch.randint(0, self.size, (1,)).item())
                out.append(self.images[i].clone())
                self.images[i] = img.clone()
            else:
                out.append(img)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        return {"size": self.size, "images": [t.cpu() for t in self.images]}

    def load_state_dict(self, state: dict, device) -> None:
        self.size = int(state["size"])
        self.images = [t.to(device) for t in state["images"]]
