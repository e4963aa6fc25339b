"""Tests for asyrp_lib.core.delta_net: f_t(h_t, t) → Δh_t and its checkpoints."""
import json

import pytest
import torch

import asyrp_lib
from asyrp_lib.core.delta_net import META_NAME, WEIGHTS_NAME, DeltaNet, timestep_embedding


def test_zero_init_gives_no_edit_for_any_shape():
    for shape in [(32, 16, 16), (512, 2, 2), (6, 3, 5)]:
        net = DeltaNet(shape)
        h = torch.randn(2, *shape)
        out = net(h, torch.tensor([10, 900]))
        assert out.shape == h.shape and torch.count_nonzero(out) == 0
        assert net.h_shape == shape


def test_output_depends_on_h_and_t_once_trained():
    torch.manual_seed(0)
    net = DeltaNet((8, 4, 4), hidden=16)
    torch.nn.init.normal_(net.conv_out.weight)
    h = torch.randn(1, 8, 4, 4)
    assert not torch.allclose(net(h, 100), net(h, 800))
    assert not torch.allclose(net(h, 100), net(2 * h, 100))
    assert torch.allclose(net(h.repeat(3, 1, 1, 1), 100), net(h, 100).repeat(3, 1, 1, 1), atol=1e-5)


def test_timestep_embedding():
    e = timestep_embedding(torch.tensor([0, 5]), 7)
    assert e.shape == (2, 7)
    assert torch.allclose(e[0, :3], torch.ones(3)) and torch.allclose(e[0, 3:], torch.zeros(4))


def test_wrong_h_is_refused():
    net = DeltaNet((8, 4, 4))
    with pytest.raises(ValueError, match=r"made for h of shape \(N, 8, 4, 4\)"):
        net(torch.randn(1, 8, 2, 2), 3)
    with pytest.raises(ValueError, match="h_shape"):
        DeltaNet((8, 4))


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    net = DeltaNet((8, 4, 4), hidden=12, time_dim=16, metadata={"model_id": "m1", "source": "face"})
    torch.nn.init.normal_(net.conv_out.weight)
    net.save(tmp_path / "d", target="smiling face", t_edit=500)
    assert (tmp_path / "d" / WEIGHTS_NAME).is_file()
    meta = json.loads((tmp_path / "d" / META_NAME).read_text())
    assert meta["h_shape"] == [8, 4, 4] and meta["model_id"] == "m1" and meta["t_edit"] == 500
    assert meta["library_version"] == asyrp_lib.__version__
    loaded = DeltaNet.load(tmp_path / "d", h_shape=(8, 4, 4), model_id="m1")
    assert loaded.hidden == 12 and loaded.time_dim == 16 and loaded.metadata["target"] == "smiling face"
    h = torch.randn(2, 8, 4, 4)
    assert torch.equal(loaded(h, 300), net(h, 300))
    # the weights file path works too
    DeltaNet.load(tmp_path / "d" / WEIGHTS_NAME)


def test_checkpoint_refusals(tmp_path):
    DeltaNet((8, 4, 4), metadata={"model_id": "m1"}).save(tmp_path / "d")
    with pytest.raises(ValueError, match=r"made for model 'm1' with h of shape 8×4×4, but this model's h has shape "
                                         r"512×8×8"):
        DeltaNet.load(tmp_path / "d", h_shape=(512, 8, 8))
    with pytest.raises(ValueError, match="trained on another model.*'m2'.*allow_other_model"):
        DeltaNet.load(tmp_path / "d", model_id="m2")
    assert DeltaNet.load(tmp_path / "d", model_id="m2", allow_other_model=True).h_shape == (8, 4, 4)
    with pytest.raises(ValueError, match="not a direction checkpoint"):
        DeltaNet.load(tmp_path / "nothing")
    (tmp_path / "d" / WEIGHTS_NAME).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot load the weights"):
        DeltaNet.load(tmp_path / "d")
