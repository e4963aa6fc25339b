r"""Checks of notebook 06 (training f_t): the network f_t, the loss L_t of one edit step, one optimiser step.

=======  ==============================================================================  ===============================
exercise  the student writes                                                              the library's version
=======  ==============================================================================  ===============================
06.1      ``class Ft(nn.Module)``: ``Ft(h_shape, hidden=None, time_dim=128)``,               :class:`asyrp_lib.core.delta_net.DeltaNet`
          ``f_t(h, t)`` → Δh_t of h's shape
06.2      ``directional_loss(cos)`` → L_dir = mean −log((1 + cos(ΔI, ΔT)) / 2)               :func:`reference_directional_loss`
          ``loss_t(p_edit, p_source, x_0, similarity, lambda_clip, lambda_l1, w_text,        :func:`reference_loss_t`
          l1_spare=0.0)`` → L_t
06.3      ``optimizer_step(loss, optimizer)``: zero the gradients, backward, step             :func:`reference_optimizer_step`
=======  ==============================================================================  ===============================

f_t is checked by its behaviour, never by the names of its layers: Δh_t has h_t's shape; it is exactly 0 before
training, and yet a gradient reaches the parameters; once the parameters are moved away from their initial values
(each perturbed at random), Δh_t depends on t (t as an int or an (N,) tensor, one per image), each image is
edited on its own, every position is treated by itself (1×1 convolutions: permuting the H×W positions of h_t
permutes those of Δh_t; a 3×3 convolution mixes neighbours), and every parameter gets a gradient.

The loss is the one :class:`asyrp_lib.core.loss.AsyrpLoss` computes in training (its ``terms``, with the defaults:
the log form of L_dir, P_t^source of the unedited trajectory, the text weight w_text on the L1 term); the check
feeds it the same tensors through a stand-in of the process step and of the CLIP loss. ``similarity(images_edit,
images_source)`` is cos(ΔI, ΔT) per image: :meth:`asyrp_lib.core.clip_loss.DirectionalCLIPLoss.similarity` in the
notebook, a small random linear "CLIP" in the check.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.delta_net import DeltaNet
from ..core.loss import AsyrpLoss
from .checks import NotWritten, Part, Wrong, as_tensor, call, diagnose, exercise, gap, running, same

__all__ = ["reference_directional_loss", "reference_loss_t", "reference_optimizer_step"]


# --------------------------------------------------------------------------------------------
# The library's versions with the student's signatures
# --------------------------------------------------------------------------------------------
class _Step:
    """What :meth:`AsyrpLoss.terms` reads from a :class:`asyrp_lib.core.process.ProcessStep`: the edited rows' P_t^edit
    and P_t^source of the unedited rows (the batch holds both)."""

    def __init__(self, p_edit: torch.Tensor, p_source: torch.Tensor):
        self.n = p_edit.shape[0]
        self.pred_x0, self.pred_x0_unedited, self.pred_x0_plain = p_edit, p_source, p_source
        self.x_t = p_edit.new_empty((2 * self.n, 1, 1, 1))


class _ClipLoss:
    """What :meth:`AsyrpLoss.terms` reads from a :class:`asyrp_lib.core.clip_loss.DirectionalCLIPLoss`."""

    def __init__(self, similarity, x_0, w_text: float):
        self._similarity, self._x_0, self.text_cosine = similarity, x_0, float(w_text)

    def similarity(self, images_edit, source_embeds=None):
        return self._similarity(images_edit, self._x_0)


def _terms(p_edit, p_source, x_0, similarity, lambda_clip, lambda_l1, w_text, l1_spare=0.0):
    loss = AsyrpLoss(lambda_clip=float(lambda_clip), lambda_l1=float(lambda_l1), clip_form="log",
                     l1_target="unedited", l1_text_weight=True, l1_spare=float(l1_spare))
    return loss.terms(_Step(p_edit, p_source), _ClipLoss(similarity, x_0, w_text), source_embeds=None)


def reference_directional_loss(cos):
    """L_dir = mean over the images of −log((1 + cos(ΔI, ΔT)) / 2), as :class:`asyrp_lib.core.loss.AsyrpLoss` trains
    it (``clip_form="log"``); ``cos``: (N,)."""
    cos = torch.as_tensor(cos)
    dummy = cos.new_zeros((cos.shape[0], 1, 1, 1))
    return _terms(dummy, dummy, dummy, lambda a, b: cos, 1.0, 0.0, 1.0).clip


def reference_loss_t(p_edit, p_source, x_0, similarity, lambda_clip, lambda_l1, w_text, l1_spare=0.0):
    """L_t = λ_CLIP · L_dir + λ_L1 · w_text · mean |P_t^edit − P_t^source| (over the pixels left after sparing the
    ``l1_spare`` share of each image's most-changed ones): :meth:`asyrp_lib.core.loss.AsyrpLoss.terms`' ``total``."""
    return _terms(p_edit, p_source, x_0, similarity, lambda_clip, lambda_l1, w_text, l1_spare).total


def reference_optimizer_step(loss, optimizer):
    """One step of training (as :func:`asyrp_lib.core.loss.loss_step` takes it): zero the gradients, backward, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


# ------------------------------------------------------------------------------------------ 06.1
_H_SHAPE = (32, 4, 4)  # (C, H, W) of the h_t the check feeds f_t
_TS = (900, 500, 100)


def _build(cls, h, **kwargs):
    """An instance of the student's class (``NotWritten`` for the starter, whose ``__init__`` is ``...``)."""
    args = ", ".join(["h_shape"] + [f"{k}={v}" for k, v in kwargs.items()])
    with running(f"Ft({args})"):
        net = cls(_H_SHAPE, **kwargs)
    if "_parameters" not in vars(net):  # nn.Module.__init__ never ran: the starter's __init__ is still `...`
        raise NotWritten()
    return net


def _forward(net, h, t, how: str) -> torch.Tensor:
    out = call(net, h, t, name=f"with t {how}, your f_t")
    if not isinstance(out, torch.Tensor) or out.shape != h.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise Wrong(f"with t {how}, Δh_t should be a tensor of h_t's shape {tuple(h.shape)}; got {got}")
    if not torch.isfinite(out).all():
        raise Wrong(f"with t {how}, your Δh_t contains NaN or infinite values")
    return out


def _n_params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def _check_ft(cls, rng):
    if not isinstance(cls, type):
        call(cls, _H_SHAPE, name="your Ft")  # the starter returns None: not written
        raise Wrong("Ft should be a class, class Ft(nn.Module), that the notebook builds as Ft(h_shape)")
    if not issubclass(cls, nn.Module):
        raise Wrong("Ft should be a torch module: class Ft(nn.Module), with super().__init__() first in __init__")
    if issubclass(cls, DeltaNet):
        raise Wrong("your Ft is built on the library's DeltaNet: write its layers yourself")
    C, H, W = _H_SHAPE
    h = torch.randn((len(_TS), C, H, W), generator=rng)
    r = torch.randn(h.shape, generator=rng)  # weights of a made-up loss, to take gradients
    net = _build(cls, h)
    params = list(net.parameters())
    if not params:
        raise Wrong("your f_t has no parameters (no layers registered as attributes in __init__), so nothing "
                    "can be trained")
    _check_ft_at_start(net, h, r, params)
    _check_ft_sees_t(net, h, rng, params)
    _check_ft_positions(net, h, rng)
    _check_ft_gradients(net, h, r)
    _check_ft_arguments(cls, h, net)


def _check_ft_at_start(net, h, r, params):
    """Before training: Δh_t = 0 exactly, and still a gradient for the output layer."""
    out = _forward(net, h, 500, "an int")
    if out.abs().max() != 0:
        raise Wrong(f"before training Δh_t must be exactly 0 (yours reaches {float(out.detach().abs().max()):.3g}): "
                    "initialise the output layer's weight and bias to zero, so that training starts from no edit")
    if not out.requires_grad:
        raise Wrong("before training no parameter gets a gradient (Δh_t carries no graph), so training could never "
                    "leave Δh_t = 0: make the output layer's weight and bias zero, don't multiply by 0 or detach")
    net.zero_grad(set_to_none=True)
    (out * r).sum().backward()
    if not any(p.grad is not None and p.grad.abs().max() > 0 for p in params):
        raise Wrong("before training no parameter gets a gradient, so training could never leave Δh_t = 0: make "
                    "the output layer's weight and bias zero (they still get a gradient), don't multiply by 0")


def _check_ft_sees_t(net, h, rng, params):
    """A trained f_t (every parameter moved): it sees t, as an int or one per image, and edits each image on its
    own."""
    with torch.no_grad():
        for p in params:
            p.add_(0.5 * torch.randn(p.shape, generator=rng, dtype=p.dtype))
    a = _forward(net, h, _TS[0], "an int")
    b = _forward(net, h, _TS[-1], "an int")
    if same(a, b, atol=1e-7, rtol=1e-6):
        raise Wrong(f"once trained, f_t must see t, and yours gives the same Δh_t for t = {_TS[0]} and t = {_TS[-1]}: "
                    "add the sinusoidal embedding emb(t), projected to the hidden width, to the hidden layer")
    vec = _forward(net, h, torch.full((len(_TS),), _TS[0]), "an (N,) tensor")
    if not same(vec, a):
        raise Wrong(f"with t an (N,) tensor of equal timesteps ({_TS[0]}), your Δh_t differs from t given as the "
                    f"int {_TS[0]} (by up to {gap(vec, a):.3g}): both mean the same t for every image")
    alone = _forward(net, h[:1], _TS[0], "an int")
    if not same(alone, a[:1]):
        raise Wrong("the Δh_t of one image changes with the other images in the batch (a BatchNorm?): f_t must edit "
                    "each image on its own (normalise within each image, e.g. with GroupNorm)")
    mixed = _forward(net, h, torch.tensor(_TS), "an (N,) tensor")
    for i, t in enumerate(_TS):
        one = _forward(net, h[i:i + 1], t, "an int")
        if not same(mixed[i:i + 1], one):
            raise Wrong(f"with t an (N,) tensor {list(_TS)}, image {i} of Δh_t should be f_t(h_t, {t}) (one timestep "
                        f"per image), and yours differs by up to {gap(mixed[i:i + 1], one):.3g}")


def _check_ft_positions(net, h, rng):
    """Every position by itself: permuting the H×W positions of h_t permutes those of Δh_t."""
    _, H, W = _H_SHAPE
    perm = torch.randperm(H * W, generator=rng)
    shuffled = _forward(net, h.flatten(2)[:, :, perm].reshape(h.shape), _TS[1], "an int")
    expected = _forward(net, h, _TS[1], "an int").flatten(2)[:, :, perm].reshape(h.shape)
    if not same(shuffled, expected):
        raise Wrong("f_t must treat each of the H×W positions of h_t by itself (1×1 convolutions): moving the "
                    "positions of h_t around should move those of Δh_t the same way, and yours mixes neighbouring "
                    "positions (a 3×3 convolution?)")


def _check_ft_gradients(net, h, r):
    """Gradients reach every parameter (the first layer, that reads h_t, included) and h_t itself."""
    net.zero_grad(set_to_none=True)
    hh = h.clone().requires_grad_(True)
    (_forward(net, hh, torch.tensor(_TS), "an (N,) tensor") * r).sum().backward()
    if hh.grad is None or hh.grad.abs().max() == 0:
        raise Wrong("Δh_t does not depend on h_t (no gradient reaches h_t): f_t reads h_t through its first layer")
    for name, p in net.named_parameters():
        if not p.requires_grad:
            raise Wrong(f"the parameter {name} of your f_t is frozen (requires_grad=False): every layer is trained")
        if p.grad is None or p.grad.abs().max() == 0:
            raise Wrong(f"the parameter {name} of your f_t gets no gradient: every layer (the first one, that reads "
                        "h_t, too) must be on the way from h_t and t to Δh_t")


def _check_ft_arguments(cls, h, net):
    """The constructor's arguments: hidden (None: C) and time_dim."""
    C = _H_SHAPE[0]
    n = _n_params(net)
    if _n_params(_build(cls, h, hidden=C)) != n:
        raise Wrong(f"hidden=None should mean a hidden width of C = {C} (h's channels), and your f_t's size differs "
                    f"between hidden=None and hidden={C}")
    wide = _build(cls, h, hidden=2 * C)
    if _n_params(wide) <= n:
        raise Wrong(f"your f_t ignores hidden: with hidden={2 * C} it should have more parameters than with {C}")
    _forward(wide, h, 500, f"an int (hidden={2 * C})")
    small = _build(cls, h, time_dim=16)
    if _n_params(small) >= n:
        raise Wrong("your f_t ignores time_dim, the size of emb(t): with time_dim=16 it should have fewer parameters "
                    "than with the default 128")
    _forward(small, h, 500, "an int (time_dim=16)")


exercise("06.1", "06_training_f_t", "the network f_t(h_t, t) → Δh_t", [
    Part("Ft", "asyrp_lib.core.delta_net:DeltaNet", _check_ft, symbol="f_t", label="delta_net.DeltaNet",
         passed="right: your f_t is 0 at the start, acts on each image and position by itself, depends on t and "
                "passes gradients to every layer"),
])


# ------------------------------------------------------------------------------------------ 06.2
def _scalar(value, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        raise Wrong(f"{what} should be one number (a 0-d tensor); yours has shape {tuple(value.shape)}: take the "
                    "mean over the images")
    return as_tensor(value, torch.zeros(()), what)


def _check_directional_loss(fn, rng):
    n = 5
    cos = torch.empty(n).uniform_(-0.9, 0.9, generator=rng)
    leaf = cos.clone().requires_grad_(True)
    out = call(fn, leaf, name="your directional_loss")
    if isinstance(out, torch.Tensor) and out.shape == (n,) and same(out, -torch.log((1 + cos) / 2)):
        raise Wrong("L_dir is one number: the mean over the images of −log((1 + cos) / 2); yours gives one per image")
    graph = _scalar(out, "your L_dir")
    mine, ref = graph.detach(), reference_directional_loss(cos)
    if not same(mine, ref):
        raise Wrong(diagnose(mine, [
            ((1 - cos).mean(), "that is the slides' 1 − cos(ΔI, ΔT); the training uses the reference "
                               "implementation's form −log((1 + cos) / 2)"),
            ((1 + cos).mean(), "L_dir must fall as cos(ΔI, ΔT) rises (an edit along ΔT has cos near 1 and L_dir near "
                               "0); 1 + cos rewards the opposite direction: use −log((1 + cos) / 2)"),
            (-torch.log(1 + cos).mean(), "divide by 2 inside the log: (1 + cos) / 2 lies in [0, 1], so that L_dir = 0 "
                                         "at cos = 1"),
            (torch.log((1 + cos) / 2).mean(), "look at the sign: L_dir = −log((1 + cos) / 2) is ≥ 0"),
            (-torch.log((1 - cos) / 2).mean(), "it is (1 + cos), not (1 − cos), inside the log: L_dir is 0 when "
                                               "ΔI points along ΔT"),
            ((-torch.log((1 + cos) / 2)).sum(), "L_dir is the mean over the images, not the sum"),
        ], f"your L_dir differs from the mean over the images of −log((1 + cos) / 2) by up to {gap(mine, ref):.3g}"))
    if not graph.requires_grad:
        raise Wrong("L_dir must keep its graph back to cos (no .item(), float() or detach): training backpropagates "
                    "through it")


class _RandomClip:
    """cos(ΔI, ΔT) per image with a random linear image "encoder": a stand-in for the CLIP of the notebook."""

    def __init__(self, rng, shape, dim: int = 8):
        self.proj = torch.randn((int(torch.tensor(shape).prod()), dim), generator=rng)
        self.delta_t = torch.randn(dim, generator=rng)
        self.shape = tuple(shape)

    def __call__(self, images_edit, images_source):
        for what, x in (("images_edit", images_edit), ("images_source", images_source)):
            if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.shape:
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise Wrong(f"similarity(images_edit, images_source) takes two batches of images (N, "
                            f"{', '.join(map(str, self.shape))}); its {what} was {got}")
        delta_i = images_edit.flatten(1) @ self.proj - images_source.flatten(1) @ self.proj
        return torch.nn.functional.cosine_similarity(delta_i, self.delta_t[None], dim=1)


def _l1_variants(p_edit, p_src, spare):
    """The L1 term with spare > 0 as the library computes it, and some wrong ways of sparing."""
    diff = (p_edit - p_src).abs()
    per_pixel = diff.mean(dim=1).flatten(1)
    keep = max(1, per_pixel.shape[1] - int(spare * per_pixel.shape[1]))
    entries = diff.flatten(1)
    keep_e = max(1, entries.shape[1] - int(spare * entries.shape[1]))
    flat = per_pixel.flatten()
    keep_b = max(1, flat.numel() - int(spare * flat.numel()))
    return [
        (diff.mean(), "with l1_spare > 0 leave the l1_spare share of each image's pixels that P_t^edit changes most out "
                      "of the L1 mean: yours ignores l1_spare"),
        (per_pixel.topk(keep, dim=1, largest=True).values.mean(),
         "l1_spare spares the pixels that P_t^edit changes MOST (the largest |P_t^edit − P_t^source|) and averages "
         "the others; yours keeps the largest"),
        (entries.topk(keep_e, dim=1, largest=False).values.mean(),
         "with l1_spare > 0, first average |P_t^edit − P_t^source| over the colour channels (one value per pixel), "
         "then leave out each image's most-changed pixels"),
        (flat.topk(keep_b, largest=False).values.mean(),
         "with l1_spare > 0 the most-changed pixels are left out in each image separately, not over the whole batch"),
    ]


def _check_loss_t(fn, rng):
    n, shape = 3, (3, 8, 8)
    x_0 = torch.rand((n, *shape), generator=rng) * 2 - 1
    p_source = x_0 + 0.2 * torch.randn((n, *shape), generator=rng)
    p_edit = p_source + 0.3 * torch.randn((n, *shape), generator=rng)
    similarity = _RandomClip(rng, shape)
    lc = float(torch.empty(()).uniform_(0.5, 1.5, generator=rng))
    ll = float(torch.empty(()).uniform_(2.0, 5.0, generator=rng))
    w = float(torch.empty(()).uniform_(0.5, 0.9, generator=rng))
    spare = float(torch.empty(()).uniform_(0.15, 0.45, generator=rng))
    cos = similarity(p_edit, x_0)
    l_dir = (-torch.log((1 + cos) / 2)).mean()
    l1 = (p_edit - p_source).abs().mean()

    # l1_spare left at its default (0): the plain mean
    leaf = p_edit.clone().requires_grad_(True)
    graph = _scalar(call(fn, leaf, p_source, x_0, similarity, lc, ll, w, name="your loss_t"), "your L_t")
    mine, ref = graph.detach(), reference_loss_t(p_edit, p_source, x_0, similarity, lc, ll, w)
    if not same(mine, ref):
        reversed_cos = similarity(x_0, p_edit)
        raise Wrong(diagnose(mine, [
            (lc * l_dir + ll * w * (p_edit - x_0).abs().mean(),
             "the L1 term compares P_t^edit with P_t^source (P_t of the unedited process at the same t), not with "
             "the training image x_0"),
            (ll * l_dir + lc * w * l1, "λ_CLIP and λ_L1 are swapped: λ_CLIP weights L_dir, λ_L1 the L1 term"),
            (ll * w * l_dir + lc * l1, "λ_CLIP and λ_L1 are swapped: λ_CLIP weights L_dir, λ_L1 · w_text the L1 term"),
            (lc * l_dir + ll * l1, "the L1 term is weighted by w_text too: λ_L1 · w_text · mean |P_t^edit − "
                                   "P_t^source|"),
            (lc * w * l_dir + ll * l1, "w_text weights the L1 term, not L_dir"),
            (lc * l_dir + ll * w * (p_edit - p_source).abs().sum(),
             "the L1 term is the mean of |P_t^edit − P_t^source| over all its entries, not the sum"),
            (lc * l_dir + ll * w * (p_edit - p_source).pow(2).mean(),
             "the L1 term is the mean absolute difference |P_t^edit − P_t^source|, not the squared one"),
            (lc * (-torch.log((1 + cos) / 2)).sum() + ll * w * l1, "L_dir is the mean over the images, not the sum"),
            (lc * (1 - cos).mean() + ll * w * l1, "L_dir: the training uses −log((1 + cos) / 2), not the slides' "
                                                  "1 − cos"),
            (lc * (1 + cos).mean() + ll * w * l1, "L_dir must fall as cos(ΔI, ΔT) rises; 1 + cos rewards the "
                                                  "opposite direction: use −log((1 + cos) / 2)"),
            (lc * (-torch.log((1 + reversed_cos) / 2)).mean() + ll * w * l1,
             "ΔI runs from x_0 to P_t^edit: call similarity(P_t^edit, x_0), the edited images first"),
        ], f"your L_t differs from λ_CLIP · L_dir + λ_L1 · w_text · mean |P_t^edit − P_t^source| by up to "
           f"{gap(mine, ref):.3g}: compare it term by term"))
    rest = (p_source, x_0, similarity, lc, ll, w)
    _check_loss_t_graph(graph, leaf, p_edit, rest)
    _check_loss_t_spare(fn, p_edit, rest, spare, l_dir)


def _check_loss_t_graph(graph, leaf, p_edit, rest: tuple):
    """L_t keeps its graph, and its gradient with respect to P_t^edit is the reference's (``rest``: the other
    arguments of loss_t)."""
    if not graph.requires_grad:
        raise Wrong("L_t must keep its graph back to P_t^edit (no .item(), float() or detach): training "
                    "backpropagates through it to f_t")
    ref_leaf = p_edit.clone().requires_grad_(True)
    reference_loss_t(ref_leaf, *rest).backward()
    with running("taking the gradient of your L_t"):
        (g,) = torch.autograd.grad(graph, leaf, allow_unused=True)
    if g is None or not same(g, ref_leaf.grad):
        raise Wrong("your L_t has the right value but not the right gradient with respect to P_t^edit: is a term "
                    "detached, or computed from a copy of P_t^edit?")


def _check_loss_t_spare(fn, p_edit, rest: tuple, spare: float, l_dir):
    """l1_spare > 0: the L1 term leaves out each image's most-changed pixels."""
    p_source, lc, ll, w = rest[0], rest[3], rest[4], rest[5]
    mine = _scalar(call(fn, p_edit, *rest, l1_spare=spare, name="your loss_t"), "your L_t")
    ref = reference_loss_t(p_edit, *rest, spare)
    if not same(mine, ref):
        raise Wrong(diagnose(mine, [(lc * l_dir + ll * w * v, m) for v, m in _l1_variants(p_edit, p_source, spare)],
                             f"your L_t is right with l1_spare = 0 but not with l1_spare = {spare:.2f} (by up to "
                             f"{gap(mine, ref):.3g}): per pixel, average |P_t^edit − P_t^source| over the colour "
                             "channels; in each image leave out the int(l1_spare · H·W) largest; average the rest"))


exercise("06.2", "06_training_f_t", "the loss L_t of one edit step", [
    Part("directional_loss", "asyrp_lib.course.ex06_train:reference_directional_loss", _check_directional_loss,
         symbol="L_dir", label="AsyrpLoss's L_dir (loss.AsyrpLoss.terms)"),
    Part("loss_t", "asyrp_lib.course.ex06_train:reference_loss_t", _check_loss_t, symbol="L_t",
         label="AsyrpLoss's L_t (loss.AsyrpLoss.terms)", guards=("asyrp_lib.core.loss:l1_distance",)),
])


# ------------------------------------------------------------------------------------------ 06.3
def _copy(params):
    return [p.detach().clone().requires_grad_(True) for p in params]


def _check_optimizer_step(fn, rng):
    x = torch.randn((6, 4), generator=rng)
    y = torch.randn((6, 3), generator=rng)
    start = [torch.randn((4, 3), generator=rng), torch.randn(3, generator=rng)]

    def loss_of(w, b):
        return ((x @ w + b - y) ** 2).mean()

    backward_called = []

    def run(step, params, calls: int = 2):
        """The parameters after each of ``calls`` steps taken with ``step`` (Adam, as the notebook trains)."""
        opt = torch.optim.Adam(params, lr=0.05)
        after = []
        for _ in range(calls):
            loss = loss_of(*params)
            loss.register_hook(lambda g: backward_called.append(True) or g)
            out = step(loss, opt)
            after.append([p.detach().clone() for p in params])
        return after, out

    expected, _ = run(reference_optimizer_step, _copy(start))
    backward_called.clear()
    mine_params = _copy(start)
    with running("your optimizer_step"):
        mine, out = run(fn, mine_params)
    unmoved = all(torch.equal(p, s) for p, s in zip(mine[0], start))
    if unmoved and out is None and not backward_called:
        raise NotWritten()
    if unmoved:
        raise Wrong("after your step the parameters have not moved: backward() computes the gradients and step() "
                    "uses them, so the order is zero_grad(), backward(), step() (is step() called before backward(), "
                    "or the gradients zeroed between the two?)")
    if not all(same(p, e) for p, e in zip(mine[0], expected[0])):
        raise Wrong("your first step does not move the parameters as optimizer.step() does after loss.backward(): "
                    "use the optimizer you are given (zero_grad(), backward(), step())")
    if not all(same(p, e) for p, e in zip(mine[1], expected[1])):
        raise Wrong("your first step is right but the second is not: the first loss's gradients were still there and "
                    "added to the second's; zero them (optimizer.zero_grad()) before backward()")


exercise("06.3", "06_training_f_t", "one optimiser step", [
    Part("optimizer_step", "asyrp_lib.course.ex06_train:reference_optimizer_step", _check_optimizer_step,
         symbol="the optimiser step", label="optimiser step (as in loss.loss_step)",
         guards=("asyrp_lib.core.loss:loss_step",)),
])
