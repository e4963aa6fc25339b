"""Small inputs for tests on the tiny profile: smooth random images and a saved direction that edits."""
import torch
import torch.nn.functional as F

from asyrp_lib.core.delta_net import DeltaNet


def smooth_faces(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    """``n`` smooth random images in [-1, 1] (upsampled 8×8 noise)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False).tanh()


def saved_direction(folder, tiny, **meta):
    """A direction for the tiny model whose last layer is not zero (so it edits), saved as `asyrp train` would."""
    torch.manual_seed(0)
    net = DeltaNet(tiny.h_shape)
    with torch.no_grad():
        for p in net.conv_out.parameters():
            p.normal_(0, 0.05)
    return net.save(folder, model_id=tiny.model_id, source="face", target="smiling face", t_edit=500, t_boost=100,
                    steps=4, image_size=tiny.image_size, **meta)
