"""The playground (asyrp_lib.front.widgets) driven from Python on the tiny profile, without a browser: strengths change
the edit, strength 0 is the reconstruction, the inversion runs once, uploads of both ipywidgets shapes parse,
and bad input becomes a message in the UI instead of a traceback."""
import io
from datetime import datetime

import pytest
import torch
from PIL import Image

from asyrp_lib.front import widgets as pw
from asyrp_lib.core.delta_net import DeltaNet

T_EDIT, T_BOOST = 500, 200


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny U-Net is too small to gain from a second thread; on a busy 2-core machine the second one only
    waits (measured: 20× slower per step). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def direction(tiny, tmp_path_factory):
    """A direction folder for the tiny model: a DeltaNet with a non-zero last layer, saved like notebook 06 does."""
    torch.manual_seed(3)
    net = DeltaNet(tiny.h_shape)
    torch.nn.init.normal_(net.conv_out.weight, std=0.5)
    folder = tmp_path_factory.mktemp("dirs") / "random_direction"
    net.save(folder, model_id=tiny.model_id, t_edit=T_EDIT, t_boost=T_BOOST, steps=tiny.default_steps,
             image_size=tiny.image_size, source="face", target="random face")
    return folder


@pytest.fixture
def pg(tiny, direction):
    p = pw.Playground(tiny, seed=1)
    assert p.add_direction(str(direction), strength=1.0), p.error
    return p


def png_bytes(size=(50, 30), mode="RGBA"):
    buf = io.BytesIO()
    Image.new(mode, size, (200, 40, 40, 128) if mode == "RGBA" else (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


def upload_v8(name, content):
    return ({"name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
             "last_modified": datetime(2024, 1, 1)},)


def upload_v7(name, content):
    return {name: {"metadata": {"name": name, "type": "image/png", "size": len(content), "lastModified": 0},
                   "content": content}}


def test_defaults_come_from_the_direction(pg, tiny):
    assert pg.source.shape == (1, 3, tiny.image_size, tiny.image_size)
    assert (pg.t_edit, pg.t_boost, pg.intervals_origin()) == (T_EDIT, T_BOOST, "direction")
    assert pg.names == ["random_direction"] and pg.oracle is None  # no oracle outside the toy world
    assert pg.state()["directions"] == {"random_direction": 1.0}


def test_strength_changes_the_edit_and_zero_is_the_reconstruction(pg):
    r1 = pg.update()
    assert r1 is not None, pg.error
    assert r1.edited.shape == r1.source.shape == r1.reconstruction.shape
    assert not torch.allclose(r1.edited, r1.reconstruction, atol=1e-3)
    assert pg.set_strength("random_direction", -1.0)
    r2 = pg.update()
    assert not torch.allclose(r1.edited, r2.edited, atol=1e-3)
    assert torch.equal(r1.reconstruction, r2.reconstruction)
    assert pg.set_strength("random_direction", 0.0)
    r0 = pg.update()
    assert torch.equal(r0.edited, r0.reconstruction) and r0.generated == []


def test_strength_zero_matches_the_editor_reconstruction(pg):
    """The cached reconstruction is the one AsyrpEditor computes beside an edit (same noise)."""
    r = pg.update()
    ref = pg.editor.edit(pg.source, [(pg.slots[0].direction, 0.5)], t_edit=T_EDIT, t_boost=T_BOOST,
                         generator=torch.Generator().manual_seed(pg.noise_seed))
    assert torch.allclose(r.reconstruction, ref.reconstruction, atol=1e-4)


def test_inversion_once_and_one_generation_per_change(pg):
    pg.update()
    assert pg.editor.cache.misses == 1 and pg.counts == {"inversions": 1, "reconstructions": 1, "edits": 1}
    for c in (0.5, -0.5, 1.5):
        pg.set_strength("random_direction", c)
        assert pg.update().generated == ["edit"]
    assert pg.set_t_edit(300)
    assert pg.update().generated == ["edit"]
    assert pg.set_asymmetric(False)
    assert pg.update().generated == ["edit"]
    assert pg.editor.cache.misses == 1 and pg.editor.cache.hits >= 5
    assert pg.counts == {"inversions": 1, "reconstructions": 1, "edits": 6}
    pg.set_boost(False)  # another reconstruction (no boosting noise), still no new inversion
    assert pg.update().generated == ["reconstruction", "edit"] and pg.editor.cache.misses == 1


def test_symmetric_differs_from_asymmetric(pg):
    a = pg.update().edited
    pg.set_asymmetric(False)
    s = pg.update().edited
    assert not torch.allclose(a, s, atol=1e-3)
    pg.set_strength("random_direction", 0.0)
    r = pg.update()
    assert torch.equal(r.edited, r.reconstruction)


def test_bad_intervals_and_strengths_are_messages(pg):
    assert pg.set_t_edit(200) and pg.set_t_boost(600)
    assert pg.update() is None and "t_boost" in pg.error
    assert not pg.set_t_edit(5000) and "t_edit" in pg.error
    assert not pg.set_strength("random_direction", 99) and "strength" in pg.error
    assert not pg.set_strength("nope", 1) and "nope" in pg.error


def test_missing_direction_folder_is_a_message(tiny, tmp_path):
    p = pw.Playground(tiny)
    assert not p.add_direction(str(tmp_path / "missing")) and "no such folder" in p.error
    assert not p.add_direction(str(tmp_path)) and "not a direction checkpoint" in p.error
    assert p.names == [] and p.intervals_origin() == "fallback"
    r = p.update()  # no direction: the edit is the reconstruction, at the fallback intervals
    assert r is not None and torch.equal(r.edited, r.reconstruction)


def test_direction_for_another_h_shape_is_refused(tiny, tmp_path):
    DeltaNet((8, 2, 2)).save(tmp_path / "other", model_id=tiny.model_id)
    p = pw.Playground(tiny)
    assert not p.add_direction(tmp_path / "other") and "does not fit" in p.error


@pytest.mark.parametrize("shape", [upload_v7, upload_v8])
def test_both_upload_shapes_parse(shape):
    content = png_bytes()
    assert pw.upload_files(shape("face.png", content)) == [("face.png", content)]
    assert pw.upload_files(()) == [] and pw.upload_files({}) == []
    with pytest.raises(ValueError, match="upload"):
        pw.upload_files("face.png")


@pytest.mark.parametrize("shape", [upload_v7, upload_v8])
def test_upload_of_an_image_is_converted_with_a_note(pg, tiny, shape):
    assert pg.use_upload(shape("my face.png", png_bytes((50, 30)))), pg.error
    assert pg.source.shape == (1, 3, tiny.image_size, tiny.image_size) and pg.source_label == "my face.png"
    notes = " ".join(pg.notes)
    assert "RGBA composited on white" in notes and "centre-cropped" in notes and "my face.png" in notes
    assert pg.update() is not None
    assert pg.use_seed(1) and pg.source_label.endswith("#1") and pg.notes == []  # back to a seeded source


def test_upload_of_a_non_image_is_an_error_message(pg):
    before = pg.source
    assert not pg.use_upload(upload_v8("notes.txt", b"this is not an image"))
    assert "notes.txt" in pg.error and "not an image" in pg.error
    assert pg.source is before  # the previous source stays


def test_ui_wiring_and_messages(tiny, direction):
    ui = pw.playground(tiny, directions=[str(direction)], seed=2)
    assert isinstance(ui, pw.PlaygroundUI) and ui.playground.names == ["random_direction"]
    assert (ui.t_edit.value, ui.t_boost.value) == (T_EDIT, T_BOOST)
    first = ui.images["edited"].value
    assert first and ui.images["source"].value and "Error" not in ui.message.value
    slider = ui.sliders["random_direction"]
    slider.value = -1.5  # what the browser's slider does
    assert ui.images["edited"].value != first and ui.playground.slots[0].strength == -1.5
    assert "computed 1)" in ui.status.value  # one inversion, then cache hits
    slider.value = 0.0
    assert ui.images["edited"].value == ui.images["reconstruction"].value
    ui.asymmetric.value = "symmetric"
    assert ui.playground.asymmetric is False
    # bad input: a message, never an exception
    ui._on_upload({"new": upload_v7("broken.jpg", b"\x00\x01 not a jpeg")})
    assert "broken.jpg" in ui.message.value and "Traceback" not in ui.message.value
    ui.path.value = "/no/such/direction"
    ui.add_path.click()
    assert "no such folder" in ui.message.value
    ui.t_edit.value = 200
    ui.t_boost.value = 600
    assert "t_boost" in ui.message.value
    ui.t_boost.value = 100
    assert ui.message.value == "" and ui.playground.result.t_boost == 100
    # changed from Python, shown by refresh(): the controls follow the playground's state
    ui.playground.set_strength("random_direction", 0.75)
    ui.playground.set_boost(False)
    ui.refresh()
    assert slider.value == 0.75 and ui.boost.value is False and "boosting off" in ui.status.value


def test_playground_reports_problems_with_starting_directions(tiny):
    ui = pw.playground(tiny, directions=["no_such_direction"])
    assert ui.playground.names == [] and "no_such_direction" in ui.message.value


def test_oracle_readings(tiny, pg):
    from asyrp_lib.toy.toyworld import Oracle

    pg.oracle = Oracle.load()
    r = pg.update()
    assert set(r.readings) == {"source", "reconstruction", "edited"}
    assert {"smile", "glasses", "eyes", "hair_color", "face"} <= set(r.readings["edited"])
    assert "smile" in pw.describe_reading(r.readings["edited"])
