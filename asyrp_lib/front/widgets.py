r"""The playground of notebook 08: every knob of the generative process (eq. 6, :mod:`asyrp_lib.core.process`)
on a widget, with Δh_t = Σ_i c_i f_t^i(h_t), one strength c_i per direction.

==========================  ==================  ============================================================
control                     symbol              what it changes
==========================  ==================  ============================================================
source (seed / upload)      x_0                 the image that is inverted (once) to x_T and edited
direction + strength        f_t^i, c_i          which trained f_t are summed into Δh_t, and how much (c < 0
                                                 pushes the other way)
``t_edit``                  t_edit              the edit acts on the steps t ≥ t_edit
``t_boost``                 t_boost             the steps t < t_boost add fresh noise (η = 1)
asymmetric                  eq. (4) vs. symm.   Δh feeds P_t only (asymmetric) or P_t and D_t (symmetric)
quality boosting            η_boost             1 (on) or 0 (off) below t_boost
==========================  ==================  ============================================================

No maths lives here: :class:`Playground` keeps the state and calls the library
(:class:`asyrp_lib.core.pipeline.AsyrpEditor` for the asymmetric process, :func:`asyrp_lib.core.process.run_process`
with ``asymmetric=False`` for the symmetric one, :func:`asyrp_lib.images.load_image` for files,
:class:`asyrp_lib.toy.toyworld.Oracle` for the toy world's readings). It can be driven from Python without a
browser (``set_strength``, ``update``…). :class:`PlaygroundUI` (an ``ipywidgets.VBox``) wires widgets to
it, and :func:`playground` builds both. What a slider move costs: the inversion of the source is cached
by the editor, the reconstruction (which no strength or t_edit changes) by the playground, so a change of a
strength, of t_edit or of the symmetric toggle runs one reverse process.

The widgets work with ipywidgets 7.7 (Colab) and 8 (JupyterLab 4): only widgets, traits and events both
have are used, and :func:`upload_files` reads both shapes of ``FileUpload.value``. Errors (an unreadable
upload, a missing direction folder, t_boost above t_edit …) become a one-line message in the UI.
"""
from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .._utils import check_images
from ..core.cache import image_hash
from ..core.delta_net import shipped_directions

try:  # the logic works without ipywidgets; only PlaygroundUI needs it
    import ipywidgets as _w
except ImportError:  # pragma: no cover - ipywidgets is in the notebooks and test extras
    _w = None

__all__ = ["Playground", "PlaygroundResult", "PlaygroundUI", "playground", "shipped_directions", "upload_files",
           "describe_reading", "STRENGTH_RANGE", "FALLBACK_INTERVALS", "SOURCE_KINDS"]

#: The strength sliders' range (the library accepts up to ``pipeline.MAX_STRENGTH`` from Python).
STRENGTH_RANGE = (-2.0, 2.0)

#: (t_edit, t_boost) as fractions of T, used when no direction carries its own values (07's fallbacks).
FALLBACK_INTERVALS = (0.5, 0.2)

#: Where the source image comes from: a rendered toy face (toy profile), a sample of the profile's model
#: from seeded noise, a file (or an upload), or a tensor handed to :meth:`Playground.use_image`.
SOURCE_KINDS = ("toy face", "model sample", "file", "image")


# --------------------------------------------------------------------------------------------
# Directions and uploads
# --------------------------------------------------------------------------------------------
def _resolve_direction(spec: str) -> Path:
    """A shipped name or a folder → the folder; a clear ``ValueError`` otherwise."""
    spec = str(spec).strip()
    if not spec:
        raise ValueError("direction: give the name of a shipped direction or the folder of one (notebook 06, "
                         "asyrp train)")
    shipped = shipped_directions()
    if spec in shipped:
        return shipped[spec]
    p = Path(spec).expanduser()
    if p.exists():
        return p
    names = ", ".join(shipped) or "none shipped yet"
    raise ValueError(f"direction {spec!r}: no such folder, and not the name of a shipped direction (shipped: "
                     f"{names}). Give the folder a direction was saved to (notebook 06 or asyrp train --output).")


def upload_files(value) -> list[tuple[str, bytes]]:
    """``FileUpload.value`` → ``[(file name, content bytes), …]``, for both ipywidgets versions.

    ipywidgets 8: a tuple of dicts ``{"name", "type", "size", "content": memoryview, "last_modified"}``;
    ipywidgets 7: a dict ``{name: {"metadata": {"name", "type", "size", …}, "content": bytes}}``.
    Anything else is a ``ValueError``; an empty value gives ``[]``.
    """
    if value is None:
        return []
    if isinstance(value, dict):  # ipywidgets 7
        items = []
        for key, entry in value.items():
            if not isinstance(entry, dict) or "content" not in entry:
                raise ValueError(f"upload: entry {key!r} holds no file content")
            name = (entry.get("metadata") or {}).get("name") or entry.get("name") or key
            items.append((str(name), entry["content"]))
    elif isinstance(value, (list, tuple)):  # ipywidgets 8
        items = []
        for entry in value:
            if not isinstance(entry, dict) or "content" not in entry:
                raise ValueError("upload: expected FileUpload.value entries with a 'content' field")
            items.append((str(entry.get("name") or "upload"), entry["content"]))
    else:
        raise ValueError(f"upload: expected the value of an ipywidgets FileUpload (a tuple or a dict), got "
                         f"{type(value).__name__}")
    out = []
    for name, content in items:
        if isinstance(content, memoryview):
            content = content.tobytes()
        elif isinstance(content, bytearray):
            content = bytes(content)
        if not isinstance(content, bytes):
            raise ValueError(f"upload {name!r}: expected the file's bytes, got {type(content).__name__}")
        out.append((name, content))
    return out


# --------------------------------------------------------------------------------------------
# The state and its update
# --------------------------------------------------------------------------------------------
@dataclass
class _Slot:
    """One direction of the playground: its name, the loaded direction, its strength and checkpoint metadata."""

    name: str
    direction: object  # a DeltaNet, a Δh tensor or a callable (h, t) -> Δh
    strength: float
    metadata: dict


@dataclass
class PlaygroundResult:
    """What one :meth:`Playground.update` shows: source, reconstruction and edit, (1, 3, S, S) on the CPU."""

    source: torch.Tensor
    reconstruction: torch.Tensor  # the same process without the edit (same inversion, same boosting noise)
    edited: torch.Tensor
    readings: dict | None  # toy world: the oracle's reading of each, {"source": {...}, "reconstruction": …}
    t_edit: int
    t_boost: int
    asymmetric: bool
    boost: bool
    strengths: dict  # direction name → strength
    seconds: float  # wall time of the update
    generated: list = field(default_factory=list)  # what ran: "inversion", "reconstruction", "edit"


class Playground:
    """The playground's state and its update, drivable from Python without a browser.

    ``profile``: a loaded :class:`~asyrp_lib.models.profiles.Profile` or a profile name (default: ``ASYRP_PROFILE``,
    as :func:`~asyrp_lib.models.profiles.load_profile`); ``n_steps``: DDIM steps (default the profile's);
    ``seed``: the first source (a toy face in the toy profile, a model sample otherwise); ``noise_seed``: the
    boosting noise (the reconstruction gets the same); ``t_edit``/``t_boost``: start values (default: the first
    direction's checkpoint, else :data:`FALLBACK_INTERVALS`); ``oracle``: ``"auto"`` (the toy world's oracle in
    the toy profile, none elsewhere), ``None`` or an :class:`~asyrp_lib.toy.toyworld.Oracle`.

    Setters (``use_seed``, ``use_file``, ``use_upload``, ``add_direction``, ``set_strength`` …) change the state
    and return ``True``, or ``False`` with the reason in :attr:`error`; :meth:`update` then runs what the change
    needs and returns a :class:`PlaygroundResult` (or ``None``, with :attr:`error` set).
    """

    def __init__(self, profile=None, *, n_steps: int | None = None, seed: int = 0, noise_seed: int = 0,
                 oracle="auto", device=None, source_kind: str | None = None, **intervals):
        from .._utils import grouped_options
        from ..core.pipeline import AsyrpEditor
        from ..models.profiles import load_profile

        intervals = grouped_options("Playground", intervals, {}, also=("t_edit", "t_boost"))
        t_edit, t_boost = intervals.get("t_edit"), intervals.get("t_boost")

        if profile is None or isinstance(profile, str):
            profile = load_profile(profile, device=device)
        self.profile = profile
        self.editor = AsyrpEditor(profile, n_steps=n_steps, progress=False)
        self.T = profile.schedule.num_train_timesteps
        if oracle == "auto":
            oracle = self._load_oracle() if profile.is_toy else None
        self.oracle = oracle
        self.noise_seed = int(noise_seed)
        self.asymmetric = True
        self.boost = True
        self.slots: list[_Slot] = []
        self._t_edit = self._t_boost = None  # set by the user (None: follow the directions)
        self.error: str | None = None  # why the last change or update failed
        self.notes: list[str] = []  # what happened to the last loaded image (conversions)
        self.result: PlaygroundResult | None = None
        self.counts = {"inversions": 0, "reconstructions": 0, "edits": 0}
        self._source = None  # (label, tensor)
        self._recon: dict = {}
        self._readings: dict = {}
        kind = source_kind or ("toy face" if profile.is_toy else "model sample")
        if kind not in SOURCE_KINDS[:2]:
            raise ValueError(f"source_kind: expected one of {SOURCE_KINDS[:2]}, got {source_kind!r}")
        self.seed_kind = kind  # what use_seed makes: a toy face or a model sample
        self.source_kind = kind  # where the current source came from (one of SOURCE_KINDS)
        self.seed = None
        if t_edit is not None:
            self.set_t_edit(t_edit) or self._raise()
        if t_boost is not None:
            self.set_t_boost(t_boost) or self._raise()
        self.use_seed(seed) or self._raise()

    def _raise(self):
        raise ValueError(self.error)

    def _load_oracle(self):
        try:
            from ..toy.toyworld import Oracle

            return Oracle.load(device=self.profile.device)
        except Exception as exc:  # readings are a help, not a requirement
            self.notes = [f"no oracle readings: {exc}"]
            return None

    def _fail(self, exc: Exception) -> bool:
        self.error = str(exc) if isinstance(exc, (ValueError, FileNotFoundError)) else \
            f"{type(exc).__name__}: {exc}"
        return False

    # -- timesteps ------------------------------------------------------------------------------
    @property
    def timesteps(self) -> list[int]:
        """The editor's DDIM timesteps, T down to 0: the values the t_edit / t_boost sliders offer."""
        return list(self.editor.timesteps)

    def snap(self, t: int) -> int:
        """The DDIM timestep that acts like ``t`` as t_edit or t_boost (the smallest one ≥ t): the process tests
        t ≥ t_edit and t < t_boost, so both pick the same steps."""
        t = int(t)
        above = [s for s in self.timesteps if s >= t]
        return min(above) if above else max(self.timesteps)

    def _intervals(self, given=(None, None)) -> tuple:
        """t_edit / t_boost by the editor's rule (:func:`asyrp_lib.core.pipeline.intervals_from`): ``given``, else
        the first direction checkpoint's; ``None`` where none says."""
        from ..core.pipeline import intervals_from

        return intervals_from(*given, [(s.name, s.metadata) for s in self.slots], warn=False)

    @property
    def t_edit(self) -> int:
        """The user's t_edit, else the first direction's (checkpoint metadata), else the fallback; on the grid."""
        t = self._intervals((self._t_edit, None))[0]
        return self.snap(t if t is not None else FALLBACK_INTERVALS[0] * self.T)

    @property
    def t_boost(self) -> int:
        t = self._intervals((None, self._t_boost))[1]
        return self.snap(t if t is not None else FALLBACK_INTERVALS[1] * self.T)

    def intervals_origin(self) -> str:
        """Where t_edit / t_boost come from: ``"set"``, ``"direction"`` or ``"fallback"``."""
        if self._t_edit is not None or self._t_boost is not None:
            return "set"
        return "direction" if self._intervals()[0] is not None else "fallback"

    def _set_t(self, attr: str, value) -> bool:
        from .._utils import check_timestep

        try:
            setattr(self, attr, None if value is None else check_timestep(value, attr[1:], self.T))
            return True
        except ValueError as exc:
            return self._fail(exc)

    def set_t_edit(self, value) -> bool:
        """t_edit (``None``: follow the directions again)."""
        return self._set_t("_t_edit", value)

    def set_t_boost(self, value) -> bool:
        """t_boost (``None``: follow the directions again)."""
        return self._set_t("_t_boost", value)

    def set_noise_seed(self, seed: int) -> bool:
        """The seed of the boosting noise z (edit and reconstruction get the same)."""
        try:
            self.noise_seed = int(seed)
        except (TypeError, ValueError):
            return self._fail(ValueError(f"noise seed: expected an integer, got {seed!r}"))
        return True

    def set_asymmetric(self, value: bool) -> bool:
        self.asymmetric = bool(value)
        return True

    def set_boost(self, value: bool) -> bool:
        """Quality boosting on (η = 1 below t_boost) or off (η = 0 everywhere)."""
        self.boost = bool(value)
        return True

    # -- the source image -----------------------------------------------------------------------
    @property
    def source(self) -> torch.Tensor | None:
        return None if self._source is None else self._source[1]

    @property
    def source_label(self) -> str:
        return "" if self._source is None else self._source[0]

    def use_seed(self, seed: int, kind: str | None = None) -> bool:
        """The source: a toy face (toy profile) or a sample of the profile's model, from ``seed``."""

        kind = kind or self.seed_kind
        try:
            seed = int(seed)
            if kind not in SOURCE_KINDS[:2]:
                raise ValueError(f"kind: expected one of {SOURCE_KINDS[:2]}, got {kind!r}")
            if kind == "toy face" and not self.profile.is_toy:
                raise ValueError(f"toy faces belong to the toy profile; the {self.profile.name!r} profile edits "
                                 f"samples of its own model or an uploaded photo")
            x = self.profile.source_images(1, seed, steps=self.editor.n_steps, progress=False,
                                           kind="render" if kind == "toy face" else "sample")
        except Exception as exc:
            return self._fail(exc)
        self.source_kind = self.seed_kind = kind
        self.seed, self.notes, self.error = seed, [], None
        self._source = (f"{kind} #{seed}", x.detach().to("cpu", torch.float32))
        return True

    def use_image(self, image: torch.Tensor, label: str = "image") -> bool:
        """The source: a tensor (3, S, S) or (1, 3, S, S) in [-1, 1] of the editor's size."""
        try:
            x = image.detach() if isinstance(image, torch.Tensor) else None
            if x is not None and x.dim() == 3:
                x = x.unsqueeze(0)
            s = self.editor.image_size
            if x is None or x.dim() != 4 or tuple(x.shape[:2]) != (1, 3) or tuple(x.shape[-2:]) != (s, s):
                got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
                raise ValueError(f"image: expected one image (1, 3, {s}, {s}) in [-1, 1], got {got}; load files with "
                                 f"use_file")
            check_images(x, "image", channels=3)
        except Exception as exc:
            return self._fail(exc)
        self.source_kind, self.notes, self.error = "image", [], None
        self._source = (str(label), x.to("cpu", torch.float32))
        return True

    def _take(self, load: Callable[[], torch.Tensor], label: str) -> bool:
        """The source: what ``load()`` returns, with the loader's conversion notes (stderr lines) kept."""
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                x = load()
        except Exception as exc:
            return self._fail(exc)
        self.source_kind, self.error = "file", None
        self.notes = [line.split("] ", 1)[-1] for line in stderr.getvalue().splitlines() if line.strip()]
        self._source = (label, x.to("cpu", torch.float32))
        return True

    def use_file(self, path) -> bool:
        """The source: an image file of any size and mode (converted and centre-cropped by
        :func:`asyrp_lib.images.load_image`; its notes are kept in :attr:`notes`)."""
        from ..images import load_image

        return self._take(lambda: load_image(path, self.editor.image_size), Path(path).name)

    def use_upload(self, value) -> bool:
        """The source: the (first) file of an ipywidgets ``FileUpload.value`` (either version's shape), read by
        :func:`asyrp_lib.images.load_upload` (any size and mode, with notes, as :meth:`use_file`)."""
        from ..images import load_upload

        try:
            files = upload_files(value)
            if not files:
                raise ValueError("upload: no file received")
        except Exception as exc:
            return self._fail(exc)
        name, content = files[0]
        ok = self._take(lambda: load_upload(content, self.editor.image_size, name=name), name)
        if ok and len(files) > 1:
            self.notes.append(f"{len(files)} files uploaded; using the first, {name}")
        return ok

    # -- directions ------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [s.name for s in self.slots]

    def add_direction(self, direction, strength: float = 1.0, name: str | None = None) -> bool:
        """Add a direction at ``strength``: a shipped name, a folder (notebook 06, ``asyrp train``), a
        :class:`~asyrp_lib.core.delta_net.DeltaNet`, a constant Δh tensor or a callable ``(h, t) -> Δh``."""
        from ..core.delta_net import DeltaNet

        try:
            if isinstance(direction, (str, os.PathLike)):
                folder = _resolve_direction(direction)
                label = name or (str(direction) if str(direction) in shipped_directions() else folder.name)
                direction = folder
            else:
                label = name or (direction.metadata.get("name") or direction.metadata.get("target")
                                 if isinstance(direction, DeltaNet) else None) or \
                    ("Δh" if isinstance(direction, torch.Tensor) else "direction")
            loaded = self.editor.directions([(direction, strength)])[0]  # loads and checks h shape, model, strength
        except Exception as exc:
            return self._fail(exc)
        src = loaded.source
        meta = dict(src.metadata) if isinstance(src, DeltaNet) else {}
        base, label, k = str(label), str(label), 2
        while label in self.names:
            label, k = f"{base} ({k})", k + 1
        self.slots.append(_Slot(label, src, float(loaded.strength), meta))
        self.error = None
        return True

    def remove_direction(self, name: str) -> bool:
        if name not in self.names:
            return self._fail(ValueError(f"direction {name!r}: not in the playground ({', '.join(self.names)})"))
        self.slots = [s for s in self.slots if s.name != name]
        return True

    def set_strength(self, name: str, value: float) -> bool:
        """The strength c of direction ``name`` (negative pushes the other way; 0 switches it off)."""
        from ..core.pipeline import check_strength

        try:
            slot = next((s for s in self.slots if s.name == name), None)
            if slot is None:
                raise ValueError(f"direction {name!r}: not in the playground ({', '.join(self.names) or 'none'})")
            slot.strength = check_strength(value, name)
        except ValueError as exc:
            return self._fail(exc)
        return True

    # -- the update -------------------------------------------------------------------------------
    def _generator(self):
        return torch.Generator().manual_seed(self.noise_seed)

    def _read(self, key: str, image: torch.Tensor):
        if self.oracle is None:
            return None
        if key not in self._readings:
            self._readings[key] = self.oracle.predict(image)[0]
        return self._readings[key]

    def update(self) -> PlaygroundResult | None:
        """Source, reconstruction and edit for the current state. Runs only what a change needs: the inversion
        once per image (the editor's cache), the reconstruction once per image and boosting setting, the edit
        at every call (skipped, and equal to the reconstruction, when every strength is 0)."""
        from ..core.process import DeltaH, check_intervals, run_process

        start = time.perf_counter()
        ed = self.editor
        try:
            if self._source is None:
                raise ValueError("source: no image yet (use_seed, use_file or use_upload)")
            x = self._source[1]
            t_edit, t_boost = check_intervals(self.t_edit, self.t_boost, ed.timesteps, self.T)
            eta = 1.0 if self.boost else 0.0
            generated = []
            misses = ed.cache.misses
            ed.invert(x)  # cached: computed once per image
            if ed.cache.misses > misses:
                generated.append("inversion")
                self.counts["inversions"] += 1
            h = image_hash(x[0])
            rkey = (h, ed.n_steps, t_boost if self.boost else None, self.noise_seed if self.boost else None)
            if rkey not in self._recon:
                r = ed.edit(x, [], t_edit=t_edit, t_boost=t_boost, eta_boost=eta, generator=self._generator())
                self._recon[rkey] = r.edited.detach().cpu()
                generated.append("reconstruction")
                self.counts["reconstructions"] += 1
            recon = self._recon[rkey]
            active = [(s.direction, s.strength) for s in self.slots if s.strength != 0]
            if not active:
                edited = recon
            elif self.asymmetric:
                edited = ed.edit(x, active, t_edit=t_edit, t_boost=t_boost, eta_boost=eta,
                                 generator=self._generator(), reconstruct=False).edited
            else:  # the symmetric step: ε_edit feeds D_t too
                dirs = ed.directions(active)
                edited, _, _ = run_process(ed.hspace, ed.invert(x), ed.timesteps, self.profile.schedule,
                                           edit=DeltaH([(d.f, d.strength) for d in dirs]), t_edit=t_edit,
                                           t_boost=t_boost, eta_boost=eta, generator=self._generator(),
                                           asymmetric=False, progress=False)
            if active:
                generated.append("edit")
                self.counts["edits"] += 1
            edited = edited.detach().clamp(-1, 1).cpu()
            readings = None
            if self.oracle is not None:
                readings = {"source": self._read(("source", h), x), "reconstruction": self._read(("recon", rkey), recon),
                            "edited": self.oracle.predict(edited)[0]}
        except Exception as exc:
            self._fail(exc)
            return None
        self.error = None
        self.result = PlaygroundResult(source=x, reconstruction=recon, edited=edited, readings=readings,
                                       t_edit=t_edit, t_boost=t_boost, asymmetric=self.asymmetric, boost=self.boost,
                                       strengths={s.name: s.strength for s in self.slots},
                                       seconds=time.perf_counter() - start, generated=generated)
        return self.result

    def state(self) -> dict:
        """The current settings, for printing."""
        return {"profile": self.profile.name, "source": self.source_label, "steps": self.editor.n_steps,
                "directions": {s.name: s.strength for s in self.slots}, "t_edit": self.t_edit,
                "t_boost": self.t_boost, "intervals from": self.intervals_origin(), "asymmetric": self.asymmetric,
                "quality boosting": self.boost}


def describe_reading(reading: dict | None) -> str:
    """The oracle's reading of one image in a few words (smile value and label, eyes, glasses, hair, face)."""
    if not reading:
        return ""
    from ..toy.toyattributes import smile_label

    hair = "no hair" if reading.get("hair") == "none" else f"{reading.get('hair')} {reading.get('hair_color')} hair"
    return (f"smile {reading['smile']:+.2f} ({smile_label(reading['smile'])}), eyes {reading.get('eyes')}, "
            f"glasses {reading.get('glasses')}, {hair}, face {reading.get('face', 0.0):.2f}")


# --------------------------------------------------------------------------------------------
# The widgets
# --------------------------------------------------------------------------------------------
def _png(image: torch.Tensor, min_side: int = 192) -> bytes:
    from .plotting import image_grid

    side = int(image.shape[-1])
    img = image_grid(image[:1], pad=0, scale=max(1, -(-min_side // side)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _escape(text: str) -> str:
    import html

    return html.escape(str(text))


class PlaygroundUI(_w.VBox if _w is not None else object):
    """The widgets of a :class:`Playground` (an ``ipywidgets.VBox``): source, directions with strength sliders,
    t_edit / t_boost sliders, asymmetric and boosting toggles, and source | reconstruction | edit side by side
    with the oracle's readings (toy profile). Every change calls :meth:`Playground.update` once."""

    def __init__(self, pg: Playground, *, image_side: int = 192):
        if _w is None:
            raise ImportError("PlaygroundUI needs ipywidgets: pip install ipywidgets (or the course's "
                              "'notebooks' extra)")
        W = _w
        self.playground = pg
        self.image_side = int(image_side)
        self._syncing = False
        wide = {"description_width": "initial"}
        ts = sorted(pg.timesteps)

        # source
        kinds = ["toy face", "model sample"] if pg.profile.is_toy else ["model sample"]
        self.source_kind = W.Dropdown(options=kinds, value=pg.seed_kind if pg.seed_kind in kinds else kinds[0],
                                      description="source", layout=W.Layout(width="220px"))
        self.seed = W.BoundedIntText(value=pg.seed or 0, min=0, max=2**31 - 1, description="seed",
                                     layout=W.Layout(width="160px"))
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="upload image")
        # directions
        shipped = list(shipped_directions())
        self.shipped = W.Dropdown(options=shipped or ["(none shipped yet)"], description="direction",
                                  disabled=not shipped, layout=W.Layout(width="260px"))
        self.add_shipped = W.Button(description="add", disabled=not shipped, layout=W.Layout(width="60px"))
        self.path = W.Text(value="", placeholder="folder of a trained direction (notebook 06)", description="or folder",
                           style=wide, layout=W.Layout(width="380px"))
        self.add_path = W.Button(description="add folder", layout=W.Layout(width="90px"))
        self.direction_rows = W.VBox([])
        self.sliders: dict[str, object] = {}
        # process
        self.t_edit = W.SelectionSlider(options=ts, value=pg.t_edit, description="t_edit", continuous_update=False)
        self.t_boost = W.SelectionSlider(options=ts, value=pg.t_boost, description="t_boost", continuous_update=False)
        self.asymmetric = W.ToggleButtons(options=["asymmetric", "symmetric"],
                                          value="asymmetric" if pg.asymmetric else "symmetric")
        self.boost = W.Checkbox(value=pg.boost, description="quality boosting (η = 1 below t_boost)", indent=False)
        cells = self._image_cells(W)
        self.status = W.HTML(value="")
        self.message = W.HTML(value="")
        self.message.add_class("asyrp-message")

        super().__init__([
            W.HBox([self.source_kind, self.seed, self.upload]),
            W.HBox([self.shipped, self.add_shipped]), W.HBox([self.path, self.add_path]),
            self.direction_rows,
            W.HBox([self.t_edit, self.t_boost]), W.HBox([self.asymmetric, self.boost]),
            W.HBox(cells), self.status, self.message,
        ])
        self.add_class("asyrp-playground")
        self._wire(pg)
        self.refresh()

    def _image_cells(self, W) -> list:
        """Source, reconstruction and edit side by side, each with its caption."""
        self.images, self.captions = {}, {}
        cells = []
        for key, title in (("source", "source"), ("reconstruction", "reconstruction"), ("edited", "edit")):
            self.images[key] = W.Image(format="png", width=self.image_side, height=self.image_side)
            self.images[key].add_class(f"asyrp-{key}")
            self.captions[key] = W.HTML(value="", layout=W.Layout(width=f"{self.image_side + 20}px"))
            cells.append(W.VBox([W.HTML(value=f"<b>{title}</b>"), self.images[key], self.captions[key]]))
        return cells

    def _wire(self, pg) -> None:
        """Every control calls the playground's setter once, through :meth:`_guard`."""
        self.source_kind.observe(self._guard(self._on_source), names="value")
        self.seed.observe(self._guard(self._on_source), names="value")
        self.upload.observe(self._guard(self._on_upload), names="value")
        self.add_shipped.on_click(self._guard(lambda _: self._add(self.shipped.value)))
        self.add_path.on_click(self._guard(lambda _: self._add(self.path.value)))
        self.t_edit.observe(self._guard(lambda ch: self._apply(pg.set_t_edit(ch["new"]))), names="value")
        self.t_boost.observe(self._guard(lambda ch: self._apply(pg.set_t_boost(ch["new"]))), names="value")
        self.asymmetric.observe(self._guard(lambda ch: self._apply(pg.set_asymmetric(ch["new"] == "asymmetric"))),
                                names="value")
        self.boost.observe(self._guard(lambda ch: self._apply(pg.set_boost(ch["new"]))), names="value")

    # -- wiring ----------------------------------------------------------------------------------
    def _guard(self, fn: Callable) -> Callable:
        """A callback that never raises: programmatic syncs are ignored, errors become the message."""
        def callback(*args):
            if self._syncing:
                return
            try:
                fn(*args)
            except Exception as exc:  # never a traceback in the notebook
                self._show_message(f"{type(exc).__name__}: {exc}", error=True)
        return callback

    def _apply(self, ok: bool) -> None:
        if ok:
            self.refresh()
        else:
            self._show_message(self.playground.error, error=True)

    def _on_source(self, change) -> None:
        self._apply(self.playground.use_seed(self.seed.value, kind=self.source_kind.value))

    def _on_upload(self, change) -> None:
        if not upload_files(change["new"]):
            return  # the value was cleared
        self._apply(self.playground.use_upload(change["new"]))

    def _add(self, spec: str) -> None:
        pg = self.playground
        if not pg.add_direction(spec, strength=1.0):
            self._show_message(pg.error, error=True)
            return
        self.refresh()  # the new row, and the direction's own t_edit / t_boost unless the sliders were moved

    def _remove(self, name: str) -> None:
        if not self.playground.remove_direction(name):
            self._show_message(self.playground.error, error=True)
            return
        self.refresh()

    def _rebuild_rows(self) -> None:
        W, pg = _w, self.playground
        rows, self.sliders = [], {}
        lo, hi = STRENGTH_RANGE
        for slot in pg.slots:
            s = W.FloatSlider(value=max(lo, min(hi, slot.strength)), min=lo, max=hi, step=0.05,
                              description=slot.name, continuous_update=False, readout_format="+.2f",
                              style={"description_width": "initial"}, layout=W.Layout(width="420px"))
            s.add_class("asyrp-strength")
            s.observe(self._guard(lambda ch, n=slot.name: self._apply(pg.set_strength(n, ch["new"]))), names="value")
            rm = W.Button(description="remove", layout=W.Layout(width="70px"))
            rm.on_click(self._guard(lambda _, n=slot.name: self._remove(n)))
            meta = slot.metadata
            info = W.HTML(value=_escape(f"{meta.get('source', '')} → {meta.get('target', '')}"
                                        if meta.get("target") else ""))
            self.sliders[slot.name] = s
            rows.append(W.HBox([s, rm, info]))
        self.direction_rows.children = tuple(rows)

    # -- display ---------------------------------------------------------------------------------
    def _show_message(self, text: str | None, error: bool = False) -> None:
        if not text:
            self.message.value = ""
            return
        color = "#b00020" if error else "#555"
        self.message.value = f'<span style="color:{color}">{_escape(text)}</span>'

    def sync_controls(self) -> None:
        """Set every control to the playground's state (after it was changed from Python), without updates."""
        pg = self.playground
        if list(self.sliders) != pg.names:
            self._rebuild_rows()
        self._syncing = True
        try:
            for slot in pg.slots:
                lo, hi = STRENGTH_RANGE
                self.sliders[slot.name].value = max(lo, min(hi, slot.strength))
            self.t_edit.value, self.t_boost.value = pg.t_edit, pg.t_boost
            self.asymmetric.value = "asymmetric" if pg.asymmetric else "symmetric"
            self.boost.value = pg.boost
            if pg.seed_kind in self.source_kind.options:
                self.source_kind.value, self.seed.value = pg.seed_kind, pg.seed
        finally:
            self._syncing = False

    def refresh(self) -> None:
        """Run :meth:`Playground.update` and show its result (or its error, leaving the last images). Call it
        after changing ``self.playground`` from Python: the controls are set to its state first."""
        pg = self.playground
        self.sync_controls()
        self.status.value = "<i>generating…</i>"
        r = pg.update()
        if r is None:
            self.status.value = ""
            self._show_message(pg.error, error=True)
            return
        for key in ("source", "reconstruction", "edited"):
            self.images[key].value = _png(getattr(r, key), self.image_side)
            reading = (r.readings or {}).get(key)
            self.captions[key].value = f"<small>{_escape(describe_reading(reading))}</small>" if reading else ""
        self.captions["source"].value = f"<small>{_escape(pg.source_label)}</small><br>" + self.captions["source"].value
        ran = ", ".join(r.generated) or "nothing (all cached)"
        strengths = ", ".join(f"{n} {c:+.2f}" for n, c in r.strengths.items()) or "no direction"
        origin = {"fallback": " (fallback values: no direction carries them)",
                  "direction": " (from the direction)"}.get(pg.intervals_origin(), "")
        cache = pg.editor.cache
        self.status.value = _escape(
            f"{strengths} · t_edit {r.t_edit}, t_boost {r.t_boost}{origin} · "
            f"{'asymmetric' if r.asymmetric else 'symmetric'} · boosting {'on' if r.boost else 'off'} · "
            f"{pg.editor.n_steps} DDIM steps · {r.seconds:.2f} s (ran: {ran}; inversions cached {cache.hits}, "
            f"computed {cache.misses})")
        self._show_message("; ".join(pg.notes))


def playground(profile=None, *, directions=None, strength: float = 1.0, image_side: int = 192,
               **kwargs) -> PlaygroundUI:
    """Build the playground for ``profile`` (a Profile or a name; default ``ASYRP_PROFILE``) and return its widget
    box (displayed when it is the last line of a notebook cell).

    ``directions``: what to start with — a list of shipped names, folders, DeltaNets or Δh tensors, or
    ``(direction, strength)`` pairs; default: the shipped ``smiling`` (else the first shipped one) at
    ``strength``. Other keywords go to :class:`Playground` (``n_steps``, ``seed``, ``t_edit`` …). A direction that
    cannot be added is reported in the box's message line.
    """
    pg = Playground(profile, **kwargs)
    if directions is None:
        shipped = list(shipped_directions())
        directions = ["smiling" if "smiling" in shipped else shipped[0]] if shipped else []
    elif not isinstance(directions, (list, tuple)) or (
            isinstance(directions, tuple) and len(directions) == 2 and isinstance(directions[1], (int, float))):
        directions = [directions]  # one direction, or one (direction, strength) pair
    problems = []
    for item in directions:
        d, c = item if isinstance(item, tuple) and len(item) == 2 else (item, strength)
        if not pg.add_direction(d, c):
            problems.append(pg.error)
    ui = PlaygroundUI(pg, image_side=image_side)
    if problems:
        ui._show_message("; ".join(problems), error=True)
    return ui
