"""Tests for asyrp_lib.core.pipeline: the generative process of eq. (6) with AsyrpEditor."""
import copy
import dataclasses

import pytest
import torch

from asyrp_lib.core import ddim
from asyrp_lib.core.delta_net import DeltaNet
from asyrp_lib.core.hspace import HSpaceUNet
from asyrp_lib.core.pipeline import AsyrpEditor, InversionCache, check_intervals

STEPS = 4  # timesteps 750, 500, 250, 0


@pytest.fixture(scope="module")
def editor(tiny):
    return AsyrpEditor(tiny, n_steps=STEPS, progress=False)


@pytest.fixture
def x0(images):
    return images[:2]


def random_net(h_shape, seed, model_id=None):
    torch.manual_seed(seed)
    net = DeltaNet(h_shape, metadata={"model_id": model_id} if model_id else None)
    torch.nn.init.normal_(net.conv_out.weight, std=0.5)
    return net


def test_zero_init_direction_gives_the_reconstruction(editor, x0, tiny):
    net = DeltaNet(editor.h_shape, metadata={"model_id": tiny.model_id})
    res = editor.edit(x0, [(net, 1.0)], t_edit=500, t_boost=0)
    assert res.edited.shape == x0.shape and res.t_edit == 500 and res.timesteps == [750, 500, 250, 0]
    assert torch.allclose(res.edited, res.reconstruction, atol=1e-4)  # float rounding of different batchings
    # with t_boost = 0 the reconstruction is plain deterministic DDIM from the cached inversion
    x_T = ddim.invert(tiny.unet, x0, editor.timesteps, tiny.schedule, progress=False)
    assert torch.allclose(res.x_T, x_T, atol=1e-5)
    ref = ddim.sample(tiny.unet, x_T, editor.timesteps, tiny.schedule, progress=False).clamp(-1, 1)
    assert torch.allclose(res.reconstruction, ref, atol=1e-4)


def test_edit_follows_eq6_step_by_step(editor, x0, tiny):
    """An independent loop with HSpaceUNet.eps and ddim_step: asymmetric steps (ε_edit in P_t, ε in D_t) for
    t ≥ t_edit, then plain DDIM."""
    g = torch.Generator().manual_seed(3)
    delta = 0.5 * torch.randn(editor.h_shape, generator=g)  # a constant Δh (a "global direction")
    res = editor.edit(x0, [(delta, 2.0)], t_edit=500, t_boost=0, reconstruct=False)
    assert res.reconstruction is None
    x = res.x_T
    for t, t_prev in zip(editor.timesteps, ddim.previous_timesteps(editor.timesteps)):
        a, a_prev = tiny.schedule.alpha(t), tiny.schedule.alpha(t_prev)
        with torch.no_grad():
            if t >= 500:
                eps_edit, eps = tiny.hspace.eps(x, t, delta_h=2.0 * delta)
                x = ddim.ddim_step(x, eps_edit, a, a_prev, eps_direction=eps).x_prev
            else:
                x = ddim.ddim_step(x, tiny.hspace.eps(x, t), a, a_prev).x_prev
    assert torch.allclose(res.edited, x.clamp(-1, 1), atol=1e-4)


def test_strength_sign_and_zero(editor, x0, tiny):
    net = random_net(editor.h_shape, 0, tiny.model_id)
    plus = editor.edit(x0, [(net, 1.5)], t_edit=500, t_boost=0)
    minus = editor.edit(x0, [(net, -1.5)], t_edit=500, t_boost=0, reconstruct=False)
    zero = editor.edit(x0, [(net, 0.0)], t_edit=500, t_boost=0, reconstruct=False)
    change = (plus.edited - plus.reconstruction).abs().mean()
    assert change > 1e-3  # the edit changes the output
    assert (minus.edited - plus.edited).abs().mean() > change  # −c goes the other way
    assert torch.allclose(zero.edited, plus.reconstruction, atol=1e-4)  # (batch-size rounding only)


def test_directions_combine_linearly_in_h(editor, tiny):
    a, b = random_net(editor.h_shape, 1), random_net(editor.h_shape, 2)
    h = torch.randn(2, *editor.h_shape)
    both = editor.delta_h(h, 750, [(a, 1.0), (b, -2.0)])
    assert torch.allclose(both, editor.delta_h(h, 750, [(a, 1.0)]) - 2 * editor.delta_h(h, 750, [(b, 1.0)]),
                          atol=1e-5)
    assert torch.allclose(editor.delta_h(h, 750, [(a, 3.0)]), 3 * editor.delta_h(h, 750, a), atol=1e-5)
    assert torch.count_nonzero(editor.delta_h(h, 750, [])) == 0


def test_boost_noise_is_shared_and_seeded(editor, x0, tiny):
    net = DeltaNet(editor.h_shape)
    r1 = editor.edit(x0, [(net, 1.0)], t_edit=750, t_boost=500, generator=torch.Generator().manual_seed(0))
    r2 = editor.edit(x0, [(net, 1.0)], t_edit=750, t_boost=500, generator=torch.Generator().manual_seed(0),
                     reconstruct=False)
    r3 = editor.edit(x0, [(net, 1.0)], t_edit=750, t_boost=500, generator=torch.Generator().manual_seed(1),
                     reconstruct=False)
    assert torch.allclose(r1.edited, r1.reconstruction, atol=1e-4)  # Δh = 0 and the same noise: no difference
    assert torch.allclose(r1.edited, r2.edited, atol=1e-4)  # batched with the reconstruction or not
    assert (r1.edited - r3.edited).abs().mean() > 1e-3  # stochastic boosting steps do use the noise


def test_checkpoint_direction_and_metadata_intervals(editor, x0, tiny, tmp_path):
    net = random_net(editor.h_shape, 4, tiny.model_id)
    net.save(tmp_path / "dir", t_edit=500, t_boost=0)
    by_path = editor.edit(x0, [(tmp_path / "dir", 1.0)], reconstruct=False)  # intervals from the metadata
    by_net = editor.edit(x0, [(net, 1.0)], t_edit=500, t_boost=0, reconstruct=False)
    assert by_path.t_edit == 500 and torch.allclose(by_path.edited, by_net.edited, atol=1e-6)
    other = DeltaNet((8, 4, 4))
    other.save(tmp_path / "other")
    with pytest.raises(ValueError, match="h has shape 32×16×16"):
        editor.edit(x0, [(tmp_path / "other", 1.0)], t_edit=500, t_boost=0)
    DeltaNet(editor.h_shape, metadata={"model_id": "someone else"}).save(tmp_path / "foreign")
    with pytest.raises(ValueError, match="another model"):
        editor.edit(x0, [(tmp_path / "foreign", 1.0)], t_edit=500, t_boost=0)


def test_bad_arguments(editor, x0):
    net = DeltaNet(editor.h_shape)
    for kw, msg in [(dict(t_edit=1200, t_boost=0), r"t_edit: expected an integer timestep in \[0, 999\]"),
                    (dict(t_edit=-1, t_boost=0), "t_edit"),
                    (dict(t_edit=500, t_boost=1000), "t_boost"),
                    (dict(t_edit=250, t_boost=500), "t_boost ≤ t_edit"),
                    (dict(t_edit=900, t_boost=0), "above the first DDIM step"),
                    (dict(t_boost=0), "t_edit, t_boost: not given")]:
        with pytest.raises(ValueError, match=msg):
            editor.edit(x0, [(net, 1.0)], **kw)
    with pytest.raises(ValueError, match=r"strength.*\[-5, 5\]"):
        editor.edit(x0, [(net, 6.0)], t_edit=500, t_boost=0)
    with pytest.raises(ValueError, match="strength"):
        editor.edit(x0, [(net, float("nan"))], t_edit=500, t_boost=0)
    with pytest.raises(ValueError, match="32×32 images"):
        editor.edit(torch.zeros(1, 3, 16, 16), [(net, 1.0)], t_edit=500, t_boost=0)
    with pytest.raises(ValueError, match="constant Δh must have shape"):
        editor.edit(x0, [(torch.zeros(3, 3), 1.0)], t_edit=500, t_boost=0)
    with pytest.raises(ValueError, match="t_edit"):
        AsyrpEditor(editor.profile, t_edit=1000)
    assert check_intervals(500, 500, [750, 500, 250, 0], 1000) == (500, 500)


def test_inversion_cache_in_memory_and_on_disk(tiny, x0, tmp_path, monkeypatch):
    calls = []
    real = ddim.invert
    monkeypatch.setattr(ddim, "invert", lambda *a, **k: calls.append(a[1].shape[0]) or real(*a, **k))
    e1 = AsyrpEditor(tiny, n_steps=STEPS, cache_dir=tmp_path / "inv", progress=False)
    first = e1.invert(x0)
    assert calls == [2] and len(list((tmp_path / "inv").glob("*.safetensors"))) == 2
    e1.invert(x0[:1])
    assert calls == [2] and e1.cache.hits == 1
    e2 = AsyrpEditor(tiny, n_steps=STEPS, cache_dir=tmp_path / "inv", progress=False)
    assert torch.equal(e2.invert(x0.flip(0)), first.flip(0))  # read back from disk, per image
    assert calls == [2] and e2.cache.misses == 0
    AsyrpEditor(tiny, n_steps=STEPS + 1, cache_dir=tmp_path / "inv", progress=False).invert(x0)
    assert calls == [2, 2]  # other timesteps: another key
    assert InversionCache.key("m", x0[0], [1, 0]) != InversionCache.key("m", x0[1], [1, 0])


# --------------------------------------------------------------------------------------------
# Speed options (issue 15)
# --------------------------------------------------------------------------------------------
def test_bf16_edit_is_close_to_fp32(editor, x0, tiny):
    net = random_net(editor.h_shape, 0, tiny.model_id)
    fp32 = editor.edit(x0, [(net, 1.0)], t_edit=500, t_boost=0)
    fast = AsyrpEditor(tiny, n_steps=STEPS, progress=False, precision="bf16")
    bf16 = fast.edit(x0, [(net, 1.0)], t_edit=500, t_boost=0)
    assert bf16.edited.dtype == torch.float32 and fast.precision == "bf16"
    assert fast.model_key != editor.model_key  # bf16 inversions are cached apart from fp32 ones
    diff = (bf16.edited - fp32.edited).abs().mean()
    edit = (fp32.edited - fp32.reconstruction).abs().mean()
    # measured on this tiny random U-Net: 0.046 (the edit itself: 0.34; x_T: 0.008); bf16 keeps 8 bits of mantissa
    assert 0 < diff < 0.1 and diff < 0.3 * edit, (float(diff), float(edit))
    assert (bf16.x_T - fp32.x_T).abs().mean() < 0.02


def test_channels_last_equals_the_default_layout(editor, x0, tiny):
    own = dataclasses.replace(tiny, unet=copy.deepcopy(tiny.unet), _hspace=None)  # converted in place: a copy
    net = random_net(editor.h_shape, 0, tiny.model_id)
    ref = editor.edit(x0, [(net, 1.0)], t_edit=500, t_boost=0)
    fast = AsyrpEditor(own, n_steps=STEPS, progress=False, channels_last=True, batch_size=1)
    res = fast.edit(x0, [(net, 1.0)], t_edit=500, t_boost=0)
    assert own.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert res.edited.is_contiguous() and fast.batch_size == 1
    # float rounding of other conv kernels, amplified by DDIM (1/sqrt(ᾱ_750) ≈ 4.4): measured mean 4e-6, max 5e-4
    for a, b in ((res.edited, ref.edited), (res.reconstruction, ref.reconstruction)):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=0)
        assert (a - b).abs().mean() < 2e-5


@pytest.mark.slow
def test_compiled_halves_give_the_same_edit(editor, x0, tiny):
    """torch.compile with the "eager" backend (dynamo's tracing alone: fast enough for a CPU test)."""
    net = random_net(editor.h_shape, 0, tiny.model_id)
    ref = editor.edit(x0, [(net, 1.0)], t_edit=500, t_boost=0)
    res = AsyrpEditor(tiny, n_steps=STEPS, progress=False, compile="eager").edit(x0, [(net, 1.0)], t_edit=500,
                                                                                 t_boost=0)
    torch.testing.assert_close(res.edited, ref.edited, atol=1e-5, rtol=0)
    # a pass that needs a gradient runs uncompiled (inductor's backward was wrong in a CPU check): same gradients
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for hs in (HSpaceUNet(tiny.unet), HSpaceUNet(tiny.unet, compile="eager")):
        dh = torch.zeros(1, *editor.h_shape, requires_grad=True)
        hs.eps(x, 500, dh)[0].square().mean().backward()
        grads.append(dh.grad)
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("kw, name", [
    ({"precision": "fp16"}, "precision"), ({"precision": None}, "precision"),
    ({"channels_last": "yes"}, "channels_last"), ({"channels_last": 1}, "channels_last"),
    ({"compile": "no-such-backend"}, "compile"), ({"compile": 1}, "compile"),
    ({"batch_size": 0}, "batch_size"), ({"batch_size": 2.0}, "batch_size")])
def test_bad_speed_options(tiny, kw, name):
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        AsyrpEditor(tiny, n_steps=STEPS, progress=False, **kw)


def test_no_repeated_encoder_work(tiny, x0, monkeypatch):
    """Inversion: one encoder pass per step; editing: one per step (shared by ε(x_t | h + Δh) and ε(x_t)),
    and at the first step, where the edited and the reconstruction rows are both x_T, over one copy."""
    rows = []
    real = HSpaceUNet.encode
    monkeypatch.setattr(HSpaceUNet, "encode", lambda self, x, t: rows.append(x.shape[0]) or real(self, x, t))
    ed = AsyrpEditor(tiny, n_steps=STEPS, progress=False)
    net = random_net(ed.h_shape, 0, tiny.model_id)
    res = ed.edit(x0, [(net, 1.0)], t_edit=500, t_boost=0)
    assert rows == [2] * STEPS + [2, 4, 4, 4]
    ed.edit(x0, [(net, -1.0)], t_edit=500, t_boost=0)  # the same images again: inversions from the cache
    assert rows[8:] == [2, 4, 4, 4] and ed.cache.hits == 2
    assert torch.allclose(res.x_T, ed.invert(x0))


def test_grouped_options_equal_the_keywords(tiny, x0, editor):
    """The editor's speed and inversion settings as objects, and an edit's phases as one Phases, give what the
    same settings given one by one give; an unknown keyword is refused as a signature would."""
    from asyrp_lib.core.pipeline import InversionOptions, SpeedOptions
    from asyrp_lib.core.process import Phases

    ed = AsyrpEditor(tiny, n_steps=STEPS, progress=False, speed=SpeedOptions(batch_size=1), cache_memory=7)
    assert ed.batch_size == 1 and ed.cache.max_memory == 7 and ed.inversion == InversionOptions(cache_memory=7)
    net = random_net(editor.h_shape, 3, tiny.model_id)
    one = editor.edit(x0, [(net, 1.0)], t_edit=500, t_boost=250, eta_boost=0.0)
    two = editor.edit(x0, [(net, 1.0)], phases=Phases(t_edit=500, t_boost=250, eta_boost=0.0))
    torch.testing.assert_close(one.edited, two.edited)
    with pytest.raises(TypeError, match="unexpected keyword.*t_edt"):
        editor.edit(x0, [(net, 1.0)], t_edt=500, t_boost=250)
    with pytest.raises(TypeError, match="unexpected keyword.*precison"):
        AsyrpEditor(tiny, precison="bf16")
