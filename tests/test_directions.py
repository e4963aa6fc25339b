"""asyrp_lib.beyond.directions on the tiny profile (random weights) with directions made here: the batched copies equal
the editor's own edits, strength 0 is the reconstruction, the linear algebra (PCA, Jacobian singular vectors)
checked against closed forms, and the random edits have the sizes they claim."""
import warnings

import pytest
import torch

from asyrp_lib.beyond import directions as D
from asyrp_lib.toy import evaluate
from asyrp_lib.toy import toyworld as tw
from asyrp_lib.core.delta_net import DeltaNet
from asyrp_lib.core.pipeline import AsyrpEditor
from asyrp_lib.core.process import DeltaH

T_EDIT, T_BOOST = 400, 200


def _net(h_shape, seed):
    torch.manual_seed(seed)
    net = DeltaNet(h_shape)
    torch.nn.init.normal_(net.conv_out.weight, std=0.3)  # a non-zero last layer: a real edit
    return net.eval()


@pytest.fixture(scope="module")
def editor(tiny):
    return AsyrpEditor(tiny, n_steps=6, t_edit=T_EDIT, t_boost=T_BOOST, progress=False)


@pytest.fixture(scope="module")
def faces():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(x, size=32, mode="bilinear", align_corners=False).tanh()


@pytest.fixture(scope="module")
def net(tiny):
    return _net(tiny.h_shape, 0)


@pytest.fixture(scope="module")
def sweep(editor, faces, net):
    return D.strength_sweep(editor, faces, net, [-1.0, 0.0, 1.0, 2.0], record=True)


class FakeOracle:
    """Reads 'smile' from the mean of the red channel, 'glasses' from the green one, 'face' from the contrast."""

    def predict(self, images):
        out = []
        for x in images:
            p = {a: tw.ATTRIBUTES[a][0] for a in tw.CATEGORICAL}
            p["smile"] = float(x[0].mean().clamp(-1, 1))
            p["glasses"] = "yes" if float(x[1].mean()) > 0 else "no"
            p["face"] = float(x.std() > 0.05)
            out.append(p)
        return out


# -- copies --------------------------------------------------------------------------------------
def test_sweep_shape_and_zero_strength_is_the_reconstruction(editor, faces, sweep):
    assert sweep.images.shape == (4, 3, 3, 32, 32)
    assert sweep.strengths == [-1.0, 0.0, 1.0, 2.0]
    recon = editor.edit(faces, None, eta_boost=0.0).reconstruction
    assert torch.allclose(sweep.images[1], recon, atol=1e-3)
    assert (sweep.images[2] - sweep.images[1]).abs().max() > 1e-2  # the direction does something


def test_sweep_copies_equal_the_editors_own_edits(editor, faces, net, sweep):
    for k, c in ((0, -1.0), (3, 2.0)):
        one = editor.edit(faces, [(net, c)], eta_boost=0.0, reconstruct=False).edited
        assert torch.allclose(sweep.images[k], one, atol=1e-3)


def test_copies_with_boosting_share_the_noise_of_the_editor(editor, faces, net):
    c = D.run_copies(editor, faces, [None, [(net, 1.0)]], eta_boost=1.0, seed=5)
    ref = editor.edit(faces, [(net, 1.0)], eta_boost=1.0, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(c.images[1], ref.edited, atol=1e-3)
    assert torch.allclose(c.images[0], ref.reconstruction, atol=1e-3)


def test_copies_in_small_runs_equal_one_big_run(editor, faces, net, sweep):
    c = D.run_copies(editor, faces, [[(net, s)] for s in sweep.strengths], record=True, batch_size=2)
    assert torch.allclose(c.images, sweep.images, atol=1e-3)
    for r, ref in zip(c.records, sweep.records):
        assert r.timesteps == ref.timesteps and torch.allclose(r.delta_h, ref.delta_h, atol=1e-4)
    with pytest.raises(ValueError, match="batch_size"):
        D.run_copies(editor, faces, [None], batch_size=0)


def test_saved_direction_brings_its_intervals(tiny, faces, net, tmp_path):
    net.save(tmp_path / "d", model_id=tiny.model_id, t_edit=T_EDIT, t_boost=T_BOOST, steps=6, image_size=32)
    plain = AsyrpEditor(tiny, n_steps=6, progress=False)  # no intervals of its own
    s = D.strength_sweep(plain, faces, str(tmp_path / "d"), [0.0, 1.0])
    assert (s.t_edit, s.t_boost) == (T_EDIT, T_BOOST)


def test_record_holds_the_delta_h_of_each_edit_step(editor, faces, net, sweep):
    rec = sweep.records[2]  # strength 1
    edit_ts = [t for t in editor.timesteps if t >= T_EDIT]
    assert rec.timesteps == edit_ts
    assert rec.delta_h.shape == (len(edit_ts), 3, *editor.h_shape)
    assert torch.allclose(sweep.records[3].delta_h[0], 2 * rec.delta_h[0], atol=1e-5)  # c = 2 is twice c = 1
    assert torch.count_nonzero(sweep.records[1].delta_h) == 0 and bool((sweep.records[1].eps_change < 1e-3).all())
    assert bool((rec.eps_change > 0).all())


def test_bad_strengths_and_copies_are_refused(editor, faces, net):
    with pytest.raises(ValueError, match="strength"):
        D.strength_sweep(editor, faces, net, [0.0, 9.0])
    with pytest.raises(ValueError, match="copies"):
        D.run_copies(editor, faces, [])
    with pytest.raises(TypeError, match="unexpected keyword.*t_edt"):
        D.run_copies(editor, faces, [None], t_edt=300)
    with pytest.raises(ValueError, match="asymmetric"):
        D.run_copies(editor, faces, [None], asymmetric=False)


# -- linearity -------------------------------------------------------------------------------------
def test_linearity_curve_has_one_point_per_strength(sweep):
    curve = D.linearity_curve(FakeOracle(), sweep, "smile")
    assert curve.values.shape == (4, 3) and len(curve.mean) == len(curve.std) == len(sweep.strengths)
    expect = torch.stack([x[:, 0].mean((1, 2)) for x in sweep.images])
    assert torch.allclose(curve.values, expect.clamp(-1, 1), atol=1e-5)
    assert torch.allclose(curve.mean, expect.mean(1), atol=1e-5)


def test_curve_fit_recovers_a_line():
    c = D.Curve("smile", [-2.0, -1.0, 0.0, 1.0, 2.0],
                torch.tensor([[-0.6, -0.6], [-0.3, -0.3], [0.0, 0.0], [0.3, 0.3], [0.9, 0.9]]))
    slope, r2 = c.fit(-1, 1)
    assert slope == pytest.approx(0.3) and r2 == pytest.approx(1.0)
    assert c.fit()[1] < 1.0  # the point at +2 is off the line


def test_read_attribute():
    preds = [{"smile": 0.5, "glasses": "yes", "face": 0.9}, {"smile": -0.2, "glasses": "no", "face": 0.1}]
    assert D.read_attribute(preds, "smile").tolist() == pytest.approx([0.5, -0.2])
    assert D.read_attribute(preds, "glasses", "yes").tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="value"):
        D.read_attribute(preds, "glasses", "maybe")


# -- composition --------------------------------------------------------------------------------
def test_composition_adds_one_direction_at_a_time(editor, faces, net, tiny, sweep):
    other = _net(tiny.h_shape, 1)
    comp = D.composition(editor, faces, [(net, 1.0), (other, 1.0)])
    assert comp.images.shape[0] == 3
    assert torch.allclose(comp.images[0], sweep.images[1], atol=1e-3)  # reconstruction
    assert torch.allclose(comp.images[1], sweep.images[2], atol=1e-3)  # the first direction alone
    both = editor.edit(faces, [(net, 1.0), (other, 1.0)], eta_boost=0.0, reconstruct=False).edited
    assert torch.allclose(comp.images[2], both, atol=1e-3)
    rows, table = D.composition_table(FakeOracle(), comp, [("smile", "smiling"), ("glasses", "yes")])
    assert [r["edit"] for r in rows] == ["reconstruction", "+ smile=smiling", "+ glasses=yes"]
    assert rows[0]["all asked"] is None and 0.0 <= rows[2]["all asked"] <= 1.0
    assert table.count("\n") == 1 + len(rows)
    with pytest.raises(ValueError, match="targets"):
        D.composition_table(FakeOracle(), comp, [("smile", "smiling")])


# -- homogeneity and robustness -----------------------------------------------------------------
def test_a_constant_delta_h_is_perfectly_homogeneous(editor, faces, tiny):
    v = torch.randn(tiny.h_shape, generator=torch.Generator().manual_seed(0))
    c = D.run_copies(editor, faces, [[(v, 1.0)]], record=True)
    hom = D.homogeneity(c.records[0])
    assert torch.allclose(hom.pairwise_cosine, torch.ones(len(hom.timesteps)), atol=1e-5)
    assert torch.allclose(hom.norm, hom.mean_norm, rtol=1e-5)
    assert torch.allclose(D.mean_delta_h(c.records[0])[0], v, atol=1e-5)


def test_mean_delta_h_stack_is_applied_step_by_step(editor, faces, sweep):
    rec = sweep.records[2]
    stack = D.mean_delta_h(rec)
    c = D.run_copies(editor, faces, [DeltaH(stack)], record=True)
    assert torch.allclose(c.records[0].delta_h, stack.unsqueeze(1).expand_as(rec.delta_h), atol=1e-5)
    hom = D.homogeneity(rec)
    assert bool(((hom.pairwise_cosine > -1) & (hom.pairwise_cosine < 1)).all())
    assert bool((hom.mean_norm <= hom.norm + 1e-4).all())


def test_random_edits_have_the_matched_sizes(editor, faces, sweep):
    rec = sweep.records[2]
    rdh = D.matched_random_delta_h(rec, seed=0)
    assert torch.allclose(rdh.flatten(1).norm(dim=1), rec.delta_h.flatten(2).norm(dim=2).mean(1), rtol=1e-4)
    rde = D.matched_random_delta_eps(rec, faces.shape[1:], seed=0)
    c = D.run_copies(editor, faces, [DeltaH(rdh), rde], record=True)
    # the ε change a Δε edit causes is Δε itself: its recorded size is the trained edit's ε change, step by step
    assert torch.allclose(c.records[1].eps_change, rec.eps_change.mean(1, keepdim=True).expand_as(rec.eps_change),
                          rtol=1e-3)
    assert torch.allclose(c.records[0].delta_h.flatten(2).norm(dim=2)[:, 0], rdh.flatten(1).norm(dim=1), rtol=1e-4)
    assert not torch.allclose(D.matched_random_delta_h(rec, seed=1), rdh)


def test_a_zero_eps_shift_is_the_reconstruction(editor, faces, sweep):
    c = D.run_copies(editor, faces, [D.EpsSteps(torch.zeros(3, 32, 32))])
    assert torch.allclose(c.images[0], sweep.images[1], atol=1e-3)


# -- PCA ------------------------------------------------------------------------------------------
def test_pca_components_are_orthonormal_with_decreasing_variance():
    g = torch.Generator().manual_seed(0)
    shape, n = (4, 3, 3), 200
    u = torch.linalg.qr(torch.randn(36, 2, generator=g))[0].T  # two planted orthonormal directions
    coef = torch.randn(n, 2, generator=g) * torch.tensor([5.0, 2.0])
    h = (coef @ u + 0.1 * torch.randn(n, 36, generator=g) + 3.0).view(n, *shape)
    pca = D.pca_directions(h, 3)
    V = pca.components.flatten(1)
    assert pca.components.shape == (3, *shape)
    assert torch.allclose(V @ V.T, torch.eye(3), atol=1e-5)
    assert bool((pca.std[:-1] >= pca.std[1:]).all()) and bool((pca.explained_variance_ratio[:-1] >=
                                                                pca.explained_variance_ratio[1:]).all())
    assert float(pca.explained_variance_ratio.sum()) <= 1.0 + 1e-6
    assert abs(float(V[0] @ u[0])) > 0.99 and abs(float(V[1] @ u[1])) > 0.99  # the planted directions, in order
    proj = (h.flatten(1) - pca.mean.flatten()) @ V.T
    assert torch.allclose(proj.std(0), pca.std, rtol=1e-4)
    with pytest.raises(ValueError, match="k"):
        D.pca_directions(h[:3], 3)


def test_collect_h_is_seeded_and_has_hs_shape(tiny, faces):
    a = D.collect_h(tiny.hspace, faces, 500, tiny.schedule, seed=1)
    b = D.collect_h(tiny.hspace, faces, 500, tiny.schedule, seed=1, batch_size=2)
    assert a.shape == (3, *tiny.h_shape) and torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, D.collect_h(tiny.hspace, faces, 500, tiny.schedule, seed=2))


# -- Jacobian -------------------------------------------------------------------------------------
def test_top_singular_vectors_match_the_svd_of_the_full_jacobian():
    g = torch.Generator().manual_seed(0)
    B = torch.randn(12, 30, generator=g, dtype=torch.float64)
    f = lambda X: torch.sin(X.double() @ B.T).float()  # row by row
    x = torch.randn(2, 30, generator=g)  # two base points: J stacks both Jacobians
    V, S = D.top_singular_vectors(f, x, 3, iters=40)
    J = torch.cat([torch.autograd.functional.jacobian(lambda v, xi=xi: torch.sin((xi.double() + v) @ B.T),
                                                      torch.zeros(30, dtype=torch.float64)) for xi in x])
    _, S_ref, Vt_ref = torch.linalg.svd(J)
    assert torch.allclose(S.double(), S_ref[:3], rtol=1e-4)
    assert torch.allclose((V.double() @ Vt_ref[:3].T).abs(), torch.eye(3, dtype=torch.float64), atol=1e-3)


def test_top_singular_vectors_print_no_torch_deprecation_warning():
    # torch.func.jvp's decomposition of gelu goes through torch.jit.script, which warns (with torch's own path)
    lin = torch.nn.Linear(6, 5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        D.top_singular_vectors(lambda X: torch.nn.functional.gelu(lin(X)), torch.randn(2, 6), 2, iters=2)
    assert not [w for w in caught if "jit" in str(w.message)], [str(w.message) for w in caught]
    before = list(warnings.filters)
    D.top_singular_vectors(lambda X: torch.nn.functional.gelu(lin(X)), torch.randn(2, 6), 2, iters=1)
    assert warnings.filters == before  # the filter does not outlive the call


def test_jacobian_directions_are_singular_vectors_of_dPt_dh(tiny):
    from torch.func import jvp, vjp

    from asyrp_lib.core import ddim

    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(1, 3, 16, 16, generator=g)  # a small input: h is 32×8×8
    t = 600
    jd = D.jacobian_directions(tiny.hspace, x_t, t, tiny.schedule, k=2, iters=10, oversample=2)
    V = jd.directions.flatten(1)
    assert jd.directions.shape == (2, *tiny.hspace.h_shape(16)) and jd.t == t
    assert torch.allclose(V @ V.T, torch.eye(2), atol=1e-3)
    assert float(jd.singular_values[0]) >= float(jd.singular_values[1]) > 0
    # J^T J v = σ² v, with J = ∂P_t/∂h computed here independently, one vector at a time
    hs = tiny.hspace
    with torch.no_grad():
        enc = hs.encode(x_t, t)
    p_t = lambda h: ddim.predicted_x0(x_t, hs.decode(enc, h), tiny.schedule.alpha(t))
    for v, s in zip(jd.directions, jd.singular_values):
        with D.forward_ad_context():
            _, Jv = jvp(p_t, (enc.h,), (v.unsqueeze(0),))
        _, pull = vjp(p_t, enc.h)
        (JtJv,) = pull(Jv)
        assert float(Jv.norm()) == pytest.approx(float(s), rel=1e-3)
        assert float((JtJv[0] - s ** 2 * v).norm() / s ** 2) < 0.05


# -- effects and faces ----------------------------------------------------------------------------
def test_direction_effects_name_the_attribute_moved():
    ref = torch.full((4, 3, 8, 8), -0.6)
    ref[:, :, :4] = -0.2  # some contrast ("a face"); red mean -0.4: frowning, green mean -0.4: no glasses
    up = ref.clone()
    up[:, 0] += 1.2  # red up: smile
    up[:2, 1] += 1.0  # green up on two faces: glasses
    down = ref.clone()
    down[:, 0] -= 0.3
    e = D.direction_effects(FakeOracle(), ref, torch.stack([down, up]))
    assert e["top"] == "smile" and e["top_share"] == pytest.approx(0.5)  # changed at +s only
    assert e["changes"]["glasses"] == pytest.approx(0.25) and "glasses" in e["also"]
    assert e["smile_shift"] > 1.0 and e["face_rate"] == 1.0
    table = D.effects_table({"PC1": e})
    assert "| PC1 | smile | 0.50 | glasses 0.25 |" in table


def test_faces_without_avoids_every_value():
    f = D.faces_without({"smile": "smiling", "glasses": "yes", "eyes": "closed"}, 5, seed=evaluate.DEV_SEED, size=32)
    assert f.images.shape == (5, 3, 32, 32) and len(f.attrs) == 5
    for a in f.attrs:
        assert tw.smile_label(a["smile"]) != "smiling" and a["glasses"] == "no" and a["eyes"] == "open"
    again = D.faces_without({"smile": "smiling", "glasses": "yes", "eyes": "closed"}, 5, seed=evaluate.DEV_SEED,
                            size=32)
    assert torch.equal(f.images, again.images)
