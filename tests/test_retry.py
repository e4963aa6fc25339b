"""asyrp_lib.beyond.retry on the tiny profile (random weights): the CLIP gain, the weak-face rule, and that the checked edit
keeps the first edit of every face CLIP passes and re-edits exactly the weak ones at factor × the strength."""
import json

import pytest
import torch
import torch.nn.functional as F
from _directions import saved_direction, smooth_faces

from asyrp_lib.beyond import retry
from asyrp_lib.front.cli import main
from asyrp_lib.core.pipeline import AsyrpEditor


def test_weak_faces_are_those_below_a_share_of_the_median():
    gains = torch.tensor([0.4, 0.5, 0.05, 0.45, -0.1, 0.6, 0.3, 0.55])
    weak, ref = retry.weak_faces(gains, 0.5)
    assert ref == pytest.approx(float(gains.median()))
    assert weak.tolist() == [g < 0.5 * ref for g in gains.tolist()]
    assert weak.sum() == 2  # 0.05 and -0.1
    weak, ref = retry.weak_faces(gains[:2], 0.5, reference=1.0)  # a given reference needs no batch
    assert ref == 1.0 and weak.tolist() == [True, False]
    with pytest.raises(ValueError, match="at least 8 images"):
        retry.weak_faces(gains[:3])
    with pytest.raises(ValueError, match="share"):
        retry.weak_faces(gains, 1.5)


def test_clip_gain_is_zero_without_an_edit_and_flips_with_the_strengths_sign(tiny):
    enc = tiny.clip
    x, y = smooth_faces(4, seed=3), smooth_faces(4, seed=9)
    ts, tt = F.normalize(torch.randn(enc.embed_dim), dim=0), F.normalize(torch.randn(enc.embed_dim), dim=0)
    assert retry.clip_gain(enc, x, x, ts, tt).abs().max() < 1e-5
    g = retry.clip_gain(enc, x, y, ts, tt)
    assert g.shape == (4,) and g.abs().max() > 1e-4
    assert torch.allclose(retry.clip_gain(enc, x, y, ts, tt, sign=-1.0), -g)
    assert torch.allclose(retry.clip_gain(enc, x, y, tt, ts), -g, atol=1e-6)  # swapping the prompts, too


def test_edit_checked_keeps_passed_faces_and_re_edits_the_weak_ones_stronger(tmp_path, tiny):
    d = saved_direction(tmp_path / "smiling", tiny, attribute="smile", value="smiling")
    editor = AsyrpEditor(tiny, n_steps=4, progress=False)
    x = smooth_faces(10, seed=3)
    kw = dict(eta_boost=0.0, reconstruct=False)  # deterministic: the two passes can be compared with plain edits
    checked = retry.edit_checked(editor, x, [(d, 1.0)], share=0.9, **kw)
    plain = editor.edit(x, [(d, 1.0)], **kw).edited
    stronger = editor.edit(x, [(d, 1.5)], **kw).edited
    weak = checked.weak[:, 0]
    assert weak.tolist() == (checked.gains[:, 0] < 0.9 * checked.median_gains[0]).tolist()
    assert 0 < int(weak.sum()) < 10  # share 0.9 of the median: some faces below it, the median face not
    assert torch.allclose(checked.edited[~weak], plain[~weak], atol=1e-4)
    assert torch.allclose(checked.edited[weak], stronger[weak], atol=1e-4)
    assert checked.retried.tolist() == weak.tolist() and checked.factor == 1.5
    assert torch.allclose(checked.first_edited, plain, atol=1e-4)
    # with a reference gain above every face's, all are retried; below all, none (and no batch is needed)
    assert retry.edit_checked(editor, x[:2], [(d, 1.0)], references=[1e3], **kw).retried.all()
    assert not retry.edit_checked(editor, x[:2], [(d, 1.0)], references=[-1e3], **kw).retried.any()
    grouped = retry.edit_checked(editor, x, [(d, 1.0)], check=retry.CheckOptions(share=0.9), **kw)
    assert torch.equal(grouped.weak, checked.weak) and torch.allclose(grouped.edited, checked.edited, atol=1e-5)


def test_edit_checked_refuses_what_it_cannot_check(tmp_path, tiny):
    editor = AsyrpEditor(tiny, n_steps=4, t_edit=500, t_boost=100, progress=False)
    d = saved_direction(tmp_path / "smiling", tiny, attribute="smile", value="smiling")
    with pytest.raises(ValueError, match="at least 8 images"):
        retry.edit_checked(editor, smooth_faces(3, seed=3), [(d, 1.0)], eta_boost=0.0)
    with pytest.raises(ValueError, match="records none"):
        retry.edit_checked(editor, smooth_faces(8, seed=3), [(torch.zeros(tiny.h_shape), 1.0)])
    with pytest.raises(ValueError, match=r"2 × 3 = 6, beyond the largest strength"):  # refused before editing
        retry.edit_checked(editor, smooth_faces(8, seed=3), [(d, 3.0)], factor=2.0)
    with pytest.raises(ValueError, match="above 1"):
        retry.edit_checked(editor, smooth_faces(8, seed=3), [(d, 1.0)], factor=0.5)
    with pytest.raises(ValueError, match="one gain per direction"):
        retry.edit_checked(editor, smooth_faces(8, seed=3), [(d, 1.0)], references=[0.1, 0.2])


def test_asyrp_evaluate_retry_reports_the_retried_faces(tmp_path, tiny, capsys):
    d = saved_direction(tmp_path / "smiling", tiny, attribute="smile", value="smiling")
    assert main(["evaluate", "--profile", "tiny", "--device", "cpu", "--direction", str(d), "--n", "8",
                 "--retry"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["retry"]["factor"] == 1.5 and out["retry"]["share"] == 0.5
    assert 0 <= out["retry"]["retried"] <= 8 and out["n"] == 8
    assert main(["evaluate", "--profile", "tiny", "--device", "cpu", "--direction", str(d), "--n", "4",
                 "--retry"]) == 2
    assert "needs --n 8 or more; got --n 4" in capsys.readouterr().err


def test_asyrp_edit_retry_checks_each_chunk_and_judges_a_small_last_chunk_by_the_first(tmp_path, tiny, capsys,
                                                                                          monkeypatch):
    from PIL import Image

    from asyrp_lib.images import load_image

    monkeypatch.setenv("ASYRP_CACHE", str(tmp_path / "cache"))
    d = saved_direction(tmp_path / "smiling", tiny, attribute="smile", value="smiling")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, x in enumerate(smooth_faces(11, seed=3)):  # chunks of 8 and 3
        Image.fromarray(((x.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()).save(
            inputs / f"{i:02d}.png")
    argv = ["edit", "--profile", "tiny", "--device", "cpu", "--direction", str(d), "--input", str(inputs),
            "--batch-size", "8"]
    assert main(argv + ["--output", str(tmp_path / "out"), "--retry"]) == 0
    log = capsys.readouterr().err
    assert "the CLIP check edited" in log and "2 chunk(s)" in log
    assert len(list((tmp_path / "out").iterdir())) == 11
    # the same with the library, chunk by chunk: the first chunk's medians judge the second
    editor = AsyrpEditor(tiny, n_steps=4, progress=False)
    files = sorted(inputs.iterdir())
    x = torch.cat([load_image(f, tiny.image_size) for f in files])
    gen = torch.Generator().manual_seed(0)
    first = retry.edit_checked(editor, x[:8], [(d, 1.0)], generator=gen, reconstruct=False, batch_size=8)
    second = retry.edit_checked(editor, x[8:], [(d, 1.0)], generator=gen, reconstruct=False, batch_size=8,
                                references=first.median_gains)
    n_retried = int(first.retried.sum()) + int(second.retried.sum())
    assert n_retried > 0  # (so the comparison below covers retried images too)
    assert f"the CLIP check edited {n_retried} of them again at 1.5× the strength" in log
    written = torch.cat([load_image(tmp_path / "out" / f.name, tiny.image_size) for f in files])
    assert (written - torch.cat([first.edited, second.edited])).abs().max() <= 2 / 255 + 1e-6  # PNG rounding
    code = main(["edit", "--profile", "tiny", "--device", "cpu", "--direction", str(d), "--input", str(inputs),
                 "--batch-size", "4", "--output", str(tmp_path / "o2"), "--retry"])
    assert code == 2 and "give --batch-size 8 or more" in capsys.readouterr().err


@pytest.mark.parametrize("target, own", [("smiling face", "smile"), ("face with glasses", "glasses"),
                                         ("face with closed eyes", "eyes"), ("face with red hair", "hair_color")])
def test_keep_leaves_out_the_group_of_the_edited_attribute(target, own):
    from asyrp_lib.models.clip import DirectionalCLIPLoss
    from asyrp_lib.models.profiles import TOY_KEEP_PROMPTS, load_clip

    enc = load_clip("toy", device="cpu")
    loss = DirectionalCLIPLoss(enc, "face", target)
    groups = retry._keep_groups(enc, dict(TOY_KEEP_PROMPTS), [(loss.txt_source, loss.txt_target)])
    assert [name for name, _ in groups] == [name for name, _ in TOY_KEEP_PROMPTS if name != own]


def test_keep_refuses_groups_it_cannot_read(tiny):
    prompts = [(F.normalize(torch.randn(tiny.clip.embed_dim), dim=0),) * 2]
    with pytest.raises(ValueError, match="two or more prompts"):
        retry._keep_groups(tiny.clip, {"glasses": ["a face with glasses"]}, prompts)
    with pytest.raises(ValueError, match=r"keep\['glasses'\]\[1\]"):  # the project's prompt check names the prompt
        retry._keep_groups(tiny.clip, {"glasses": ["a face with glasses", " "]}, prompts)
    with pytest.raises(ValueError, match="expected"):
        retry._keep_groups(tiny.clip, ["a face with glasses", "a face without glasses"], prompts)
    with pytest.raises(ValueError, match="nothing is left to keep"):
        retry._keep_groups(tiny.clip, {"glasses": ["a face with glasses", "a face without glasses"]}, prompts)


def _reader_of_changes(monkeypatch, source_units, leaky_at):
    """Make the keep test read one attribute that changed on faces ``leaky_at(i, units)`` says, unchanged on sources."""
    def readings(units, groups):
        if not groups:
            return torch.zeros(units.shape[0], 0, dtype=torch.long)
        out = torch.zeros(units.shape[0], len(groups), dtype=torch.long)
        for r, u in enumerate(units):
            match = ((source_units - u).abs().amax(dim=1) < 1e-5).nonzero().flatten()
            if match.numel() == 0:  # an edit, not a source: which face's?
                out[r, 0] = int(leaky_at(u))
        return out
    monkeypatch.setattr(retry, "_readings", readings)


def test_keep_edits_a_face_weaker_when_an_attribute_changed(tmp_path, tiny, monkeypatch):
    d = saved_direction(tmp_path / "smiling", tiny, attribute="smile", value="smiling")
    editor = AsyrpEditor(tiny, n_steps=4, progress=False)
    x = smooth_faces(8, seed=3)
    kw = dict(eta_boost=0.0, reconstruct=False, references=[-1e3])  # deterministic; no face weak
    plain = {m: editor.edit(x, [(d, m)], eta_boost=0.0, reconstruct=False).edited for m in (1.0, 1 / 1.5, 1 / 1.5 ** 2,
                                                                                            1 / 1.5 ** 3)}
    units = {m: retry._image_units(tiny.clip, e) for m, e in plain.items()}
    src_units = retry._image_units(tiny.clip, x)
    keep = {"smile": ["a smiling face", "a frowning face"], "glasses": ["a face with glasses", "a face without glasses"]}
    # faces 0 and 3 change an attribute at strength 1 and at no weaker one
    leaky_first = lambda u: any(((units[1.0][i] - u).abs().max() < 1e-4) for i in (0, 3))  # noqa: E731
    _reader_of_changes(monkeypatch, src_units, leaky_first)
    monkeypatch.setattr(retry, "_keep_groups", lambda enc, keep, prompts: [("glasses", torch.eye(2))])
    checked = retry.edit_checked(editor, x, [(d, 1.0)], keep=keep, **kw)
    assert checked.leaky.tolist() == [i in (0, 3) for i in range(8)]
    assert checked.extra.tolist() == [int(i in (0, 3)) for i in range(8)] and checked.kept == ["glasses"]
    assert torch.allclose(checked.multipliers[:, 0], torch.tensor([1 / 1.5 if i in (0, 3) else 1.0 for i in range(8)]))
    assert torch.allclose(checked.edited[[0, 3]], plain[1 / 1.5][[0, 3]], atol=1e-4)
    others = [1, 2, 4, 5, 6, 7]
    assert torch.allclose(checked.edited[others], plain[1.0][others], atol=1e-4)
    assert checked.final_changed.tolist() == [0] * 8
    # an attribute that changes at every strength: three edits more, each weaker, and the last one is kept
    _reader_of_changes(monkeypatch, src_units, lambda u: True)
    checked = retry.edit_checked(editor, x, [(d, 1.0)], keep=keep, **kw)
    assert checked.extra.tolist() == [3] * 8 and checked.final_changed.tolist() == [1] * 8
    assert torch.allclose(checked.multipliers, torch.full((8, 1), 1 / 1.5 ** 3))
    assert torch.allclose(checked.edited, plain[1 / 1.5 ** 3], atol=1e-4)
    assert retry.edit_checked(editor, x, [(d, 1.0)], keep=keep, tries=1, **kw).extra.tolist() == [1] * 8
    with pytest.raises(ValueError, match="tries"):
        retry.edit_checked(editor, x, [(d, 1.0)], keep=keep, tries=0, **kw)


def test_keep_searches_between_a_weak_and_a_changed_strength(tmp_path, tiny, monkeypatch):
    d = saved_direction(tmp_path / "smiling", tiny, attribute="smile", value="smiling")
    editor = AsyrpEditor(tiny, n_steps=4, progress=False)
    x = smooth_faces(8, seed=3)
    kw = dict(eta_boost=0.0, reconstruct=False)
    src_units = retry._image_units(tiny.clip, x)
    strong = retry._image_units(tiny.clip, editor.edit(x, [(d, 1.5)], **kw).edited)
    # every face is weak at strength 1 (a reference above every gain) and changes an attribute at 1.5
    _reader_of_changes(monkeypatch, src_units, lambda u: bool(((strong - u).abs().amax(dim=1) < 1e-4).any()))
    monkeypatch.setattr(retry, "_keep_groups", lambda enc, keep, prompts: [("glasses", torch.eye(2))])
    checked = retry.edit_checked(editor, x, [(d, 1.0)], keep={"g": ["a", "b"]}, references=[1e3], tries=2, **kw)
    # 1 (weak) → 1.5 (changed) → √1.5, between the two (still weak): the weak 1.5 edit is not better than √1.5's
    assert torch.allclose(checked.multipliers, torch.full((8, 1), 1.5 ** 0.5, dtype=torch.float32))
    assert checked.extra.tolist() == [2] * 8 and checked.final_weak.all() and checked.final_changed.sum() == 0
    assert torch.allclose(checked.edited, editor.edit(x, [(d, 1.5 ** 0.5)], **kw).edited, atol=1e-4)


def test_asyrp_evaluate_keep_reports_what_the_keep_test_did(tmp_path, tiny, capsys):
    d = saved_direction(tmp_path / "smiling", tiny, attribute="smile", value="smiling")
    assert main(["evaluate", "--profile", "tiny", "--device", "cpu", "--direction", str(d), "--n", "8",
                 "--keep"]) == 0
    out = json.loads(capsys.readouterr().out)["retry"]
    assert out["factor"] == 1.5 and len(out["keep"]) == 6  # the tiny profile's random CLIP: one of 7 groups left out
    assert 0 <= out["changed_first"] <= 8 and 0 <= out["retried"] <= out["edits_more"] <= 3 * 8
    assert main(["evaluate", "--profile", "tiny", "--device", "cpu", "--direction", str(d), "--n", "4",
                 "--keep"]) == 2
    assert "--keep: the CLIP check compares each face with the median" in capsys.readouterr().err


def test_asyrp_edit_keep_names_the_attributes_it_kept(tmp_path, tiny, capsys, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("ASYRP_CACHE", str(tmp_path / "cache"))
    d = saved_direction(tmp_path / "smiling", tiny, attribute="smile", value="smiling")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, x in enumerate(smooth_faces(8, seed=5)):
        Image.fromarray(((x.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()).save(
            inputs / f"{i:02d}.png")
    assert main(["edit", "--profile", "tiny", "--device", "cpu", "--direction", str(d), "--input", str(inputs),
                 "--output", str(tmp_path / "out"), "--keep"]) == 0
    log = capsys.readouterr().err
    assert "the CLIP check (keeping " in log and "stronger or weaker (× or ÷ 1.5)" in log
    assert len(list((tmp_path / "out").iterdir())) == 8
