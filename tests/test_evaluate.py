"""Toy-world edit metrics on a stand-in oracle with known answers; source faces; the comparison runner."""
import pytest
import torch

from asyrp_lib.beyond import compare as cmp
from asyrp_lib.toy import evaluate as ev
from asyrp_lib.toy import toyworld as tw
from asyrp_lib.models.clip import DirectionalCLIPLoss


def face(**kw):
    d = {"smile": 0.0, "eyes": "open", "glasses": "no", "hair": "short", "hair_color": "black", "skin": "light",
         "background": "blue", "face": 0.99}
    d.update(kw)
    return d


class LookupOracle:
    """Reads an image's id from its constant pixel value and returns the attributes stored for it."""

    def __init__(self, table):
        self.table = table

    def image(self, i):
        return torch.full((3, 32, 32), -0.9 + 0.01 * i)

    def predict(self, images):
        ids = ((images.mean(dim=(1, 2, 3)) + 0.9) / 0.01).round().long().tolist()
        return [dict(self.table[i]) for i in ids]


# (source, edited, success?, others kept?) for a "smile → smiling" edit
CASES = [
    (face(smile=0.1), face(smile=0.8), True, True),
    (face(smile=-0.7, hair="none", hair_color="black"), face(smile=0.5, hair="none", hair_color="red"), True, True),
    (face(smile=0.0), face(smile=0.2), False, True),  # still neutral
    (face(smile=0.0, glasses="no"), face(smile=0.9, glasses="yes"), True, False),
    (face(smile=0.0, hair="long", hair_color="blond"), face(smile=0.9, hair="long", hair_color="red"), True, False),
    (face(smile=0.0), face(smile=0.9, face=0.2), False, True),  # reads smiling, but is not a face
    (face(smile=0.0, hair="short"), face(smile=0.9, hair="none", hair_color="black"), True, False),
]


@pytest.fixture
def lookup():
    table = [c[0] for c in CASES] + [c[1] for c in CASES]
    oracle = LookupOracle(table)
    n = len(CASES)
    src = torch.stack([oracle.image(i) for i in range(n)])
    edit = torch.stack([oracle.image(n + i) for i in range(n)])
    return oracle, src, edit


def test_edit_metrics_known_answers(lookup):
    oracle, src, edit = lookup
    m = ev.edit_metrics(src, edit, attribute="smile", target_value="smiling", oracle=oracle)
    n = len(CASES)
    assert m["n"] == n
    assert m["success"] == pytest.approx(sum(c[2] for c in CASES) / n)
    assert m["others_kept"] == pytest.approx(sum(c[3] for c in CASES) / n)
    assert m["face_rate"] == pytest.approx((n - 1) / n)
    assert m["source_success"] == 0
    # hair colour counted only where both have hair: cases 0, 2, 3, 4, 5 (4 differs)
    assert m["kept_by_attribute"]["hair_color"] == pytest.approx(4 / 5)
    assert m["kept_by_attribute"]["hair"] == pytest.approx(6 / 7)
    assert "smile" not in m["kept_by_attribute"]
    # what changed instead, value to value (hair colour only where both have hair)
    assert m["changes"] == {"eyes": {}, "glasses": {"no → yes": 1}, "hair": {"short → none": 1},
                            "hair_color": {"blond → red": 1}, "skin": {}, "background": {}}
    assert m["lpips"] is None and m["s_dir"] is None


def test_hair_colour_success_needs_visible_hair():
    # red hair read on a head that has lost its hair is no hair-colour edit
    table = [face(hair="short"), face(hair="long"), face(hair="short", hair_color="red"),
             face(hair="none", hair_color="red")]
    oracle = LookupOracle(table)
    src = torch.stack([oracle.image(0), oracle.image(1)])
    edit = torch.stack([oracle.image(2), oracle.image(3)])
    m = ev.edit_metrics(src, edit, attribute="hair_color", target_value="red", oracle=oracle)
    assert m["success"] == 0.5
    assert m["kept_by_attribute"]["hair"] == 0.5


def test_smile_is_kept_by_label_when_editing_another_attribute():
    table = [face(smile=0.1), face(smile=0.25, glasses="yes"), face(smile=0.5), face(smile=0.3, glasses="yes")]
    oracle = LookupOracle(table)
    src = torch.stack([oracle.image(0), oracle.image(2)])
    edit = torch.stack([oracle.image(1), oracle.image(3)])
    m = ev.edit_metrics(src, edit, attribute="glasses", target_value="yes", oracle=oracle)
    assert m["success"] == 1.0
    assert m["kept_by_attribute"]["smile"] == 0.5  # 0.1 → 0.25 both neutral; 0.5 → 0.3 smiling → neutral
    assert m["others_kept"] == 0.5


def test_ground_truth_sources_and_chosen_others(lookup):
    oracle, src, edit = lookup
    truth = [dict(c[0]) for c in CASES]
    truth[0]["background"] = "green"  # the oracle read it wrong on the source; the truth says green
    m = ev.edit_metrics(src, edit, attribute="smile", target_value="smiling", oracle=oracle, source_attrs=truth)
    assert m["others_kept"] == pytest.approx((sum(c[3] for c in CASES) - 1) / len(CASES))
    m = ev.edit_metrics(src, edit, attribute="smile", target_value="smiling", oracle=oracle, others=["eyes", "skin"])
    assert m["others_kept"] == 1.0 and set(m["kept_by_attribute"]) == {"eyes", "skin"}


def test_lpips_and_s_dir(tiny, lookup):
    oracle, src, edit = lookup
    clip_loss = DirectionalCLIPLoss(tiny.clip, "face", "smiling face")
    l1 = lambda x, y: (x - y).abs().mean(dim=(1, 2, 3))  # noqa: E731 - a stand-in perceptual distance
    m = ev.edit_metrics(src, edit, attribute="smile", target_value="smiling", oracle=oracle, lpips=l1,
                        clip_loss=clip_loss, batch_size=3)
    assert m["lpips"] == pytest.approx(float(l1(src, edit).mean()))
    with torch.no_grad():
        assert m["s_dir"] == pytest.approx(float(clip_loss.similarity(edit, src).mean()), abs=1e-4)


def test_edit_metrics_bad_inputs(lookup):
    oracle, src, edit = lookup
    kw = dict(attribute="smile", target_value="smiling", oracle=oracle)
    with pytest.raises(ValueError, match="attribute"):
        ev.edit_metrics(src, edit, **{**kw, "attribute": "nose"})
    with pytest.raises(ValueError, match="target_value"):
        ev.edit_metrics(src, edit, **{**kw, "target_value": "happy"})
    with pytest.raises(ValueError, match="edited_images"):
        ev.edit_metrics(src, edit[:2], **kw)
    with pytest.raises(ValueError, match="others"):
        ev.edit_metrics(src, edit, **kw, others=["smile"])
    with pytest.raises(ValueError, match="source_attrs"):
        ev.edit_metrics(src, edit, **kw, source_attrs=[face()])
    with pytest.raises(ValueError, match="oracle"):
        ev.edit_metrics(src, edit, **{**kw, "oracle": object()})


def test_comparison_table():
    rows = {"Δh asymmetric": {"n": 32, "success": 0.9, "others_kept": 0.875, "lpips": 0.1234, "s_dir": 0.2,
                              "face_rate": 1.0, "train_seconds": 12.3, "edit_seconds_per_image": 0.5},
            "x_T optimisation": {"n": 32, "success": 0.1, "others_kept": 0.5, "lpips": None}}
    table = cmp.comparison_table(rows).splitlines()
    assert table[0].startswith("| method | n | success | others kept | LPIPS | S_dir |")
    assert table[2] == "| Δh asymmetric | 32 | 0.90 | 0.88 | 0.123 | 0.200 | 1.00 | 12.3 | 0.50 |"
    assert table[3] == "| x_T optimisation | 32 | 0.10 | 0.50 | – | – | – | – | – |"
    with pytest.raises(ValueError, match="results"):
        cmp.comparison_table({})


def test_source_faces():
    a = ev.source_faces("smile", "smiling", 12, size=32)
    assert len(a.attrs) == 12 and a.images.shape == (12, 3, 32, 32)
    assert all(tw.smile_label(f["smile"]) != "smiling" for f in a.attrs)
    assert all(s >= ev.HELDOUT_SEED for s in a.seeds)
    assert ev.source_faces("smile", "smiling", 12, size=32).attrs == a.attrs  # deterministic
    dev = ev.source_faces("smile", "smiling", 12, ev.DEV_SEED, size=32)
    assert not any(f in a.attrs for f in dev.attrs)
    g = ev.source_faces("glasses", "yes", 5, size=32)
    assert all(f["glasses"] == "no" for f in g.attrs)
    assert ev.DEV_SEED + 10_000 <= ev.HELDOUT_SEED
    h = ev.source_faces("hair_color", "red", 20, size=32)  # hair colour: only faces that have hair
    assert all(f["hair"] != "none" and f["hair_color"] != "red" for f in h.attrs)
    with pytest.raises(ValueError, match="value_to_avoid"):
        ev.source_faces("smile", "happy", 3)
    with pytest.raises(ValueError, match="n"):
        ev.source_faces("smile", "smiling", 0)


class BrightnessOracle:
    """A stand-in for real images: smiling when the mean brightness is high."""

    def predict(self, images):
        return [face(smile=float(m) * 5) for m in images.mean(dim=(1, 2, 3))]


def test_compare_methods_runs_every_method(tiny):
    train = ev.source_faces("smile", "smiling", 2, ev.DEV_SEED, size=32)
    test = ev.source_faces("smile", "smiling", 2, size=32)
    res = cmp.compare_methods(tiny, BrightnessOracle(), train=train, test=test, t_edit=300, n_steps=2,
                             delta_h=dict(epochs=1), eps_shift=dict(epochs=1), x_T=dict(n_steps=2, iters=1),
                             f_t=dict(epochs=1, batch_size=2), progress=False)
    assert set(res) == set(cmp.METHODS) | {"Δh asymmetric (train faces)"}
    for name, m in res.items():
        assert 0 <= m["success"] <= 1 and 0 <= m["others_kept"] <= 1 and m["lpips"] >= 0, name
    assert res["Δh asymmetric"]["n"] == 2 and res["Δh asymmetric"]["train_seconds"] > 0
    table = cmp.comparison_table(res)
    assert all(f"| {name} |" in table for name in res)


def test_real_oracle_on_ground_truth_edits():
    """With the shipped oracle: re-rendering the same faces with the target value is a perfect edit, and the
    unedited faces are a perfect failure (the metric, not a model, is under test)."""
    if not (tw.data_dir() / "oracle.safetensors").is_file():
        pytest.skip("the toy-world oracle weights are not in data/")
    oracle = tw.Oracle.load()
    src = ev.source_faces("smile", "smiling", 16)
    smiling = tw.render([dict(a, smile=0.75) for a in src.attrs])
    m = ev.edit_metrics(src.images, smiling, attribute="smile", target_value="smiling", oracle=oracle,
                        source_attrs=src.attrs)
    assert m["success"] == 1.0 and m["others_kept"] == 1.0 and m["source_success"] == 0.0
    m = ev.edit_metrics(src.images, src.images, attribute="smile", target_value="smiling", oracle=oracle)
    assert m["success"] == 0.0 and m["others_kept"] == 1.0 and m["face_rate"] == 1.0


def test_comparison_verdict_says_whether_asyrp_wins_and_by_how_much():
    row = lambda s, k: {"success": s, "others_kept": k}  # noqa: E731
    wins = {"Asyrp (f_t)": row(0.9, 0.9), "x_T optimisation": row(0.5, 0.8), "ε-shift": row(0.6, 0.9)}
    text = cmp.comparison_verdict(wins)
    assert "does not" not in text and "+40 points" in text and "+30 points" in text
    # a larger success gain bought with others kept is not a win; nor is a gain under the bar
    text = cmp.comparison_verdict({"Asyrp (f_t)": row(0.9, 0.3), "x_T optimisation": row(0.2, 0.5),
                                  "ε-shift": row(0.7, 0.3)})
    assert text.count("**does not**") == 2 and "others kept -20 points" in text and "success +20 points" in text
    assert "nothing to compare" in cmp.comparison_verdict({"ε-shift": row(0.1, 0.1)})



def test_metric_options_as_one_object_or_by_name(lookup):
    oracle, src, edit = lookup
    kw = dict(attribute="smile", target_value="smiling", oracle=oracle)
    by_name = ev.edit_metrics(src, edit, **kw, others=["eyes", "skin"], per_image=True)
    grouped = ev.edit_metrics(src, edit, **kw, options=ev.MetricOptions(others=["eyes", "skin"], per_image=True))
    assert by_name == grouped and "images" in grouped
    with pytest.raises(TypeError, match="unexpected keyword.*other;"):
        ev.edit_metrics(src, edit, **kw, other=["eyes"])


def test_compare_methods_checks_its_grouped_settings_first(tiny):
    faces = ev.source_faces("smile", "smiling", 1, size=32)
    with pytest.raises(TypeError, match="t_edit"):
        cmp.compare_methods(tiny, BrightnessOracle(), train=faces, test=faces, progress=False)
    with pytest.raises(TypeError, match="unexpected keyword.*eps_shfit"):
        cmp.compare_methods(tiny, BrightnessOracle(), train=faces, test=faces, t_edit=300, eps_shfit={})
    with pytest.raises(ValueError, match="methods"):
        cmp.compare_methods(tiny, BrightnessOracle(), train=faces, test=faces,
                            settings=cmp.MethodSettings(t_edit=300, methods=("nope",)), goal=cmp.EditGoal())


def test_edit_figure_measures_with_the_metric_options_it_is_given(lookup):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asyrp_lib.front.plotting import edit_figure

    oracle, src, edit = lookup
    l1 = lambda x, y: (x - y).abs().mean(dim=(1, 2, 3))  # noqa: E731 - a stand-in perceptual distance
    kw = dict(attribute="smile", target_value="smiling", oracle=oracle)
    shown = edit_figure(src, edit, **kw, lpips=l1, title="a title", ncol=3)
    assert shown.metrics == ev.edit_metrics(src, edit, **kw, lpips=l1, per_image=True)
    assert "LPIPS" in shown.sentence
    plt.close("all")
    with pytest.raises(TypeError, match="unexpected keyword.*lpip;"):
        edit_figure(src, edit, **kw, lpip=l1)
