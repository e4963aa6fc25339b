"""asyrp_lib.beyond: each new h-space method on a case with a known answer (the boundary of separable features,
the top singular vectors of a known linear map, slerp of a vector with itself), on the tiny profile (random
weights: the machinery, not the numbers), and the evaluation and script that put them side by side."""
import json
import math

import pytest
import torch
from _scripts import load_script

from asyrp_lib.beyond import methods as bm
from asyrp_lib.beyond.boundary import boundary_delta, boundary_direction, class_mean_distance, fit_linear_boundary
from asyrp_lib.beyond.injection import attribute_sources, inject, slerp
from asyrp_lib.beyond.pullback import edit_x_t, latent_at, pullback_basis, pullback_directions
from asyrp_lib.core.ddim import timesteps as ddim_timesteps
from asyrp_lib.core.hspace import HSpaceUNet
from asyrp_lib.core.process import run_process


# --------------------------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------------------------
def test_boundary_finds_the_separating_normal():
    g = torch.Generator().manual_seed(0)
    D, N = 40, 300
    normal = torch.randn(D, generator=g)
    normal /= normal.norm()
    y = torch.rand(N, generator=g) < 0.4
    noise = torch.randn(N, D, generator=g)
    noise -= (noise @ normal)[:, None] * normal  # nothing along the normal but the class: separable
    along = torch.where(y, 1.0, -1.0) * (1.5 + torch.rand(N, generator=g))  # ±[1.5, 2.5]
    x = noise + 5.0 + along[:, None] * normal  # the offset: the fit centres the features itself
    fit = fit_linear_boundary(x, y)
    assert float(fit.normal @ normal) > 0.95  # the separating normal, with its sign: towards the positives
    assert fit.train_accuracy == 1.0
    assert abs(fit.distance - 4.0) < 0.3  # the class means sit 4 apart along it
    pred = x @ fit.normal + fit.offset > 0
    assert bool((pred == y).all())  # the offset is the boundary's in the features' own coordinates


def test_boundary_direction_keeps_the_shape_and_reports_label_accuracy():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(60, 2, 3, 3, generator=g)
    y = h[:, 0, 1, 1] > 0
    noisy = y.clone()
    noisy[:6] = ~noisy[:6]
    b = boundary_direction(h, noisy, 500, truth=y)
    assert b.normal.shape == (2, 3, 3) and abs(float(b.normal.norm()) - 1) < 1e-5
    assert b.label_accuracy == pytest.approx(0.9)
    assert float(b.normal[0, 1, 1]) > 0.7  # the one coordinate that decides the labels
    assert torch.allclose(b.delta_h(2.0), 2.0 * b.distance * b.normal)
    with pytest.raises(ValueError, match="both classes"):
        fit_linear_boundary(h.flatten(1), torch.ones(60, dtype=torch.bool))


def test_boundary_delta_is_c_times_the_class_mean_distance_along_the_unit_normal():
    h = torch.zeros(4, 1, 2, 2)
    h[:, 0, 0, 0] = torch.tensor([3.0, 5.0, 0.0, 1.0])  # the positives at 3 and 5, the negatives at 0 and 1
    h[:, 0, 1, 1] = torch.tensor([7.0, -7.0, 2.0, 2.0])  # off the normal: no part of d
    y = torch.tensor([True, True, False, False])
    w = torch.zeros(1, 2, 2)
    w[0, 0, 0] = 10.0  # any length: the unit normal is e_00
    assert float(class_mean_distance(h, y, w)) == pytest.approx(3.5)  # 4 − 0.5
    d = boundary_delta(h, y, w, 2.0)
    assert d.shape == (1, 2, 2) and float(d[0, 0, 0]) == pytest.approx(7.0) and float(d.abs().sum()) == pytest.approx(7.0)
    b = boundary_direction(h, y, 500)  # the fitted boundary's Δh is the same function of its normal
    assert bool((b.labels == y).all())
    assert torch.allclose(b.delta_h(3.0), boundary_delta(h, y, b.normal, 3.0), atol=1e-5)


def test_power_iteration_finds_the_top_singular_vectors_of_a_known_map():
    g = torch.Generator().manual_seed(2)
    U, _ = torch.linalg.qr(torch.randn(15, 15, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
    s = torch.tensor([5.0, 3.0, 1.0] + [0.1] * 12, dtype=torch.float64)
    A = (U[:, :15] * s) @ V[:, :15].T  # (15, 20), singular values 5, 3, 1, 0.1 …
    A = A.float()

    def f(x):  # a batch of rows (B, 20) → (B, 15)
        return x @ A.T

    basis = pullback_directions(f, torch.randn(1, 20, generator=g), k=2, iters=20)
    assert torch.allclose(basis.sigma, torch.tensor([5.0, 3.0]), atol=1e-3)
    for i in range(2):
        assert abs(float(basis.v[i].double() @ V[:, i])) > 0.999  # right singular vectors (up to sign)
        assert abs(float(basis.u[i].double() @ U[:, i])) > 0.999  # and what they do: the left ones
        assert float(basis.u[i] @ (A @ basis.v[i])) > 0  # u = J v / ‖J v‖, with the sign of J v


def test_slerp_known_answers():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, 2, 3, 3, generator=g)
    for gamma in (0.0, 0.3, 1.0):
        assert torch.allclose(slerp(a, a, gamma), a, atol=1e-6)  # a vector with itself: itself
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(slerp(e1, e2, 0.5), torch.tensor([[1.0, 1.0]]) / math.sqrt(2), atol=1e-6)
    assert torch.allclose(slerp(e1, e2, 1 / 3), torch.tensor([[math.cos(math.pi / 6), math.sin(math.pi / 6)]]),
                          atol=1e-6)  # constant angular speed, unlike the linear blend
    same_norm = b / b.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * a.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(slerp(a, same_norm, 0.4).flatten(1).norm(dim=1), a.flatten(1).norm(dim=1), atol=1e-5)


# --------------------------------------------------------------------------------------------
# The evaluation, with an oracle that reads one pixel
# --------------------------------------------------------------------------------------------
class PixelOracle:
    """Smiling where pixel (0, 0, 0) > 0, glasses where pixel (1, 0, 0) > 0; every other attribute fixed."""

    def predict(self, images):
        return [{"face": 1.0, "smile": 0.8 if float(x[0, 0, 0]) > 0 else 0.0,
                 "glasses": "yes" if float(x[1, 0, 0]) > 0 else "no", "eyes": "open", "hair": "short",
                 "hair_color": "red" if float(x[2, 0, 0]) > 0 else "black", "skin": "light", "background": "blue"}
                for x in images]


def _images(n, smile=False, glasses=False, hair_red=False):
    x = torch.full((n, 3, 4, 4), -0.5)
    x[:, 0, 0, 0] = 0.5 if smile else -0.5
    x[:, 1, 0, 0] = 0.5 if glasses else -0.5
    x[:, 2, 0, 0] = 0.5 if hair_red else -0.5
    return x


def test_measure_leakage_and_curve():
    src = _images(4)
    edits = {1.0: _images(4, smile=True, glasses=True), 0.5: _images(2)}
    row = bm.measure(src, edits, attribute="smile", target_value="smiling", oracle=PixelOracle(), strength=1.0)
    assert row["success"] == 1.0 and row["others_kept"] == 0.0
    assert row["leakage"]["glasses"] == 1.0 and row["leakage"]["eyes"] == 0.0
    assert [(p["strength"], p["success"], p["n"]) for p in row["curve"]] == [(0.5, 0.0, 2), (1.0, 1.0, 4)]
    names, cols, mat = bm.leakage_matrix({"smile": {"m": row}}, "m")
    assert names == ["smile"] and mat[0, cols.index("glasses")] == 1.0 and math.isnan(float(mat[0, cols.index("smile")]))
    with pytest.raises(ValueError, match="strength"):
        bm.measure(src, edits, attribute="smile", target_value="smiling", oracle=PixelOracle(), strength=2.0)


def test_match_candidates_names_the_direction_that_edits_and_keeps():
    src = torch.cat([_images(3), _images(1, smile=True)])
    cands = {"smile+glasses": torch.cat([_images(3, smile=True, glasses=True), _images(1, smile=True)]),
             "smile only": torch.cat([_images(3, smile=True), _images(1, smile=True)]),
             "nothing": src.clone()}
    m = bm.match_candidates(PixelOracle(), src, cands, [("smile", "smiling"), ("glasses", "yes"),
                                                       ("hair_color", "red")])
    assert m["smile=smiling"]["best"] == "smile only" and m["smile=smiling"]["n"] == 3  # the smiling face left out
    assert m["glasses=yes"]["best"] == "smile+glasses"  # the only one that puts glasses on
    assert m["glasses=yes"]["score"] == pytest.approx(0.75 * 0.25)  # 3 of 4 hit, 1 of 4 keeps its smile
    assert m["hair_color=red"]["score"] == 0.0


def test_choose_strength_takes_the_weakest_strength_that_edits_and_keeps():
    src = torch.cat([_images(3), _images(1, smile=True)])
    edits = {1.0: src.clone(),  # too weak: nothing
             2.0: torch.cat([_images(2, smile=True), _images(1), _images(1, smile=True)]),  # 2 of 3
             4.0: torch.cat([_images(3, smile=True), _images(1, smile=True)]),  # every face, nothing else
             8.0: torch.cat([_images(3, smile=True), _images(1, smile=True)])}  # the same: the weaker one wins
    c = bm.choose_strength(PixelOracle(), src, edits, "smile", "smiling")
    assert c["strength"] == 4.0 and c["n"] == 3 and c["success"] == 1.0 and c["others_kept"] == 1.0
    assert c["scores"] == {1.0: 0.0, 2.0: pytest.approx(2 / 3), 4.0: 1.0, 8.0: 1.0}
    edits[8.0] = torch.cat([_images(3, smile=True, glasses=True), _images(1, smile=True)])  # leaks glasses
    edits[4.0] = edits[2.0]
    assert bm.choose_strength(PixelOracle(), src, edits, "smile", "smiling")["strength"] == 2.0
    none = bm.choose_strength(PixelOracle(), _images(2, smile=True), {1.0: _images(2)}, "smile", "smiling")
    assert none["strength"] is None and none["n"] == 0


def test_verdict_and_table():
    rows = {"reconstruction": {"n": 4, "success": 0.0, "others_kept": 1.0},
            "a": {"n": 4, "success": 0.9, "others_kept": 0.5}, "b": {"n": 4, "success": 0.75, "others_kept": 0.8},
            "Asyrp (f_t)": {"n": 4, "success": 0.5, "others_kept": 1.0}}
    v = bm.verdict("smile", rows)
    assert "**b**" in v and "+25 points over Asyrp (f_t)" in v  # a is more successful but keeps too little
    assert [m for m, _ in bm.best_at_kept(rows)] == ["b", "Asyrp (f_t)"]
    table = bm.results_table(rows)
    assert "| Asyrp (f_t) | text: source and target prompts | 4 | 0.50 | 1.00 |" in table
    # a variant of the winner (the same boundary from other labels) is named apart, not counted as the runner-up
    rows = {"boundary (oracle labels)": {"success": 0.47, "others_kept": 0.78},
            "boundary (CLIP labels)": {"success": 0.44, "others_kept": 0.78},
            "PCA of h": {"success": 0.41, "others_kept": 0.31}}
    v = bm.verdict("hair colour", rows)
    assert "**boundary (oracle labels)**" in v and "no other method keeps them that well" in v
    assert "boundary (CLIP labels) 0.44" in v and "points over" not in v
    rows["pullback ∂h/∂x_t"] = {"success": 0.03, "others_kept": 0.9}
    assert "+44 points over pullback ∂h/∂x_t (0.03)" in bm.verdict("hair colour", rows)
    assert bm.family("boundary (CLIP labels)") == "boundary" and bm.family("PCA of h") == "PCA of h"


def test_attribute_sources():
    orig = torch.cat([_images(2), _images(2, glasses=True)])
    content = torch.cat([_images(2, smile=True), _images(2, smile=True)])
    result = torch.cat([_images(2, smile=True), _images(1, smile=False, glasses=True), _images(1, smile=True)])
    src = attribute_sources(PixelOracle(), orig, content, result, ["smile", "glasses"])
    assert src["smile"] == {"n": 4, "from_content": 0.75, "from_original": 0.25}
    assert src["glasses"] == {"n": 2, "from_content": 0.5, "from_original": 0.5}


# --------------------------------------------------------------------------------------------
# The tiny profile (random weights)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hs(tiny):
    return HSpaceUNet(tiny.unet)


def test_injection_with_gamma_zero_is_the_reconstruction(tiny, hs, images):
    ts = ddim_timesteps(5)
    x_T = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    x_c = torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    rec, _, _ = run_process(hs, x_T, ts, tiny.schedule)
    assert torch.allclose(inject(hs, x_T, x_c, ts, tiny.schedule, gamma=0.0, t_edit=400), rec, atol=1e-4)
    moved = inject(hs, x_T, x_c, ts, tiny.schedule, gamma=0.8, t_edit=400)
    assert (moved - rec).abs().max() > 1e-3  # the content's h does something
    blended = []

    def mine(a, b, gamma):  # a notebook's own interpolation runs in its place
        blended.append(gamma)
        return slerp(a, b, gamma)

    assert torch.allclose(inject(hs, x_T, x_c, ts, tiny.schedule, gamma=0.8, t_edit=400, blend=mine), moved, atol=1e-5)
    assert blended and set(blended) == {0.8}


def test_pullback_basis_on_the_tiny_encoder(tiny, hs, images):
    x_t = images[:2]
    basis = pullback_basis(hs, x_t, 500, k=2, iters=3)
    assert basis.v.shape == (2, *images.shape[1:]) and basis.u.shape == (2, *tiny.h_shape)
    assert torch.allclose(basis.v.flatten(1).norm(dim=1), torch.ones(2), atol=1e-4)
    assert float(basis.sigma[0]) >= float(basis.sigma[1]) > 0
    # J v by finite differences matches σ u in direction
    with torch.no_grad():
        dh = (hs.encode(x_t + 1e-2 * basis.v[0], 500).h - hs.encode(x_t, 500).h).mean(0)
    cos = float(torch.nn.functional.cosine_similarity(dh.flatten(), basis.u[0].flatten(), dim=0))
    assert cos > 0.95


def test_pullback_edit_of_zero_is_the_plain_process(tiny, hs, images):
    ts = ddim_timesteps(5)
    x_T = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    x_t, index = latent_at(hs, x_T, ts, tiny.schedule, 500)
    assert ts[index] <= 500 and (index == 0 or ts[index - 1] > 500)
    rec, _, _ = run_process(hs, x_T, ts, tiny.schedule)
    out = edit_x_t(hs, x_t, index, ts, tiny.schedule, [torch.zeros(1, *images.shape[1:]), torch.ones(1, 3, 32, 32)])
    assert out.shape == (2, *images.shape)
    assert torch.allclose(out[0], rec, atol=1e-4) and (out[1] - rec).abs().max() > 1e-3


def test_bench_boundary_on_tiny(tiny):
    from asyrp_lib.toy import toyworld as tw

    bench = bm.Bench(tiny, tw.Oracle.load())
    attrs = tw.sample_attributes(24, 5)
    faces = tw.render(attrs, size=tiny.image_size)
    h = bench.collect_h(faces)
    b = bench.boundary(h, faces, "glasses", "yes", labels="oracle")
    assert b.normal.shape == tiny.h_shape and b.label_accuracy == 1.0 and b.train_accuracy == 1.0
    x = bench.edit_h(faces[:2], [b.delta_h(1.0)])
    assert x.shape == (1, 2, *faces.shape[1:])


# --------------------------------------------------------------------------------------------
# The script
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_script_on_tiny_writes_and_resumes(tmp_path):
    script = load_script("scripts/compare_hspace_methods.py")
    out = tmp_path / "r.json"
    argv = ["--profile", "tiny", "--n-test", "2", "--n-dev", "8", "--n-boundary", "24", "--n-jacobian", "2",
            "--n-train", "2", "--n-content", "2", "--epochs", "1", "--k", "2", "--curve-faces", "2",
            "--attributes", "smile", "--output", str(out), "--cache", str(tmp_path / "cache")]
    assert script.main(argv) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]["smile"]
    assert report["commit"] and report["machine"] and report["date"]
    assert not report["complete"] and "glasses: boundary (CLIP labels)" in report["missing"]  # smile only
    assert not [m for m in report["missing"] if m.startswith("smile")]  # every smile row and its curve
    assert "smile: Asyrp (f_t)" in report["skipped"]  # no shipped direction for the tiny model
    c = report["fits"]["boundary (oracle labels)"]["smile"]
    assert rows["boundary (oracle labels)"]["strength"] == c["strength"] in bm.BOUNDARY_STRENGTHS
    assert set(c["dev_scores"]) == {f"{x:g}" for x in bm.BOUNDARY_STRENGTHS}
    assert set(rows) >= {"reconstruction", "boundary (oracle labels)", "PCA of h", "pullback ∂h/∂x_t",
                         "content injection", "global Δh", "ε-shift"}  # f_t: the shipped one is the toy model's
    assert all(r["n"] == 2 and 0 <= r["success"] <= 1 for r in rows.values())
    assert len(rows["PCA of h"]["curve"]) == 3 and rows["PCA of h"]["named"]
    assert "smile" in report["injection_sources"]
    md = out.with_suffix(".md").read_text()
    assert "## smile" in md and "| content injection |" in md
    before = out.read_text()
    assert script.main(argv) == 0  # resumes: every row is there, nothing measured again
    assert json.loads(out.read_text())["rows"] == json.loads(before)["rows"]
    assert script.main(argv + ["--redo", "content injection", "--no-curves"]) == 0  # measured again, no curve now
    again = json.loads(out.read_text())
    assert len(again["rows"]["smile"]["content injection"]["curve"]) == 1
    assert "smile: content injection (strength curve)" in again["missing"]


def test_script_merges_runs_made_side_by_side(tmp_path):
    script = load_script("scripts/compare_hspace_methods.py")
    row = {"n": 2, "success": 0.5, "others_kept": 1.0, "strength": 1.0}
    main = {"rows": {"smile": {"reconstruction": dict(row, success=0.0), "Asyrp (f_t)": row}}, "fits": {},
            "injection_sources": {}, "commit": "a", "settings": {"n_test": 2}, "complete": False}
    main["rows"]["smile"]["Asyrp (f_t)"]["curve"] = [{"strength": 1.0, "success": 0.5}]
    side = {"rows": {"smile": {"ε-shift": dict(row, success=0.25),
                               "Asyrp (f_t)": dict(row, success=0.0, curve=[{"strength": 1.0, "success": 0.0},
                                                                            {"strength": 2.0, "success": 0.9}])},
                     "glasses": {"PCA of h": row}}, "fits": {"PCA of h": {"seconds": 1.0}}, "commit": "b"}
    (tmp_path / "r.json").write_text(json.dumps(main))
    (tmp_path / "side.json").write_text(json.dumps(side))
    assert script.main(["--output", str(tmp_path / "r.json"), "--merge", str(tmp_path / "side.json")]) == 0
    merged = json.loads((tmp_path / "r.json").read_text())
    assert list(merged["rows"]["smile"]) == ["reconstruction", "Asyrp (f_t)", "ε-shift"]  # the methods' order
    assert merged["rows"]["smile"]["Asyrp (f_t)"]["success"] == 0.5  # a row already there wins
    assert merged["rows"]["smile"]["Asyrp (f_t)"]["curve"] == [{"strength": 1.0, "success": 0.5},
                                                               {"strength": 2.0, "success": 0.9}]  # + new points
    assert merged["rows"]["glasses"]["PCA of h"] == row and merged["fits"]["PCA of h"] == {"seconds": 1.0}
    assert merged["merged"][0]["commit"] == "b"
    assert "**Partial**" in (tmp_path / "r.md").read_text()
