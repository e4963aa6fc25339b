"""Wrong answers to notebook 06's exercises (the network f_t; the loss L_t; one optimiser step)."""

_FT = '''
class Ft(nn.Module):
    def __init__(self, h_shape, hidden=None, time_dim=128):
        super().__init__()
        channels = h_shape[0]
        hidden = hidden or channels
        self.time_dim = time_dim
        self.conv_in = nn.Conv2d(channels, hidden, kernel_size=KERNEL, padding=KERNEL // 2)
        self.time_proj = nn.Linear(time_dim, hidden)
        self.norm = NORM
        self.act = nn.SiLU()
        self.conv_out = nn.Conv2d(hidden, channels, kernel_size=1)
        ZERO_INIT

    def forward(self, h, t):
        from asyrp_lib.core.delta_net import timestep_embedding

        TIMES
        emb = self.time_proj(timestep_embedding(t, self.time_dim))
        z = self.conv_in(h) + EMB
        return OUT
'''
_GOOD = dict(KERNEL="1", NORM="nn.GroupNorm(math.gcd(32, max(1, hidden // 4)), hidden)",
             ZERO_INIT="nn.init.zeros_(self.conv_out.weight); nn.init.zeros_(self.conv_out.bias)",
             TIMES="t = torch.as_tensor(t)\n        t = t.expand(h.shape[0]) if t.dim() == 0 else t",
             EMB="emb[:, :, None, None]", OUT="self.conv_out(self.act(self.norm(z)))")


def _ft(**changes):
    source = _FT
    for key, value in {**_GOOD, **changes}.items():
        source = source.replace(key, value)
    return source


_LOSS = '''
def loss_t(p_edit, p_source, x_0, similarity, lambda_clip, lambda_l1, w_text, l1_spare=0.0):
    cos = similarity(p_edit, x_0)
    l_dir = DIR
    diff = (p_edit - TARGET).abs()
    if l1_spare > 0:
        per_pixel = diff.mean(dim=1).flatten(1)
        keep = max(1, per_pixel.shape[1] - int(l1_spare * per_pixel.shape[1]))
        l1 = per_pixel.topk(keep, dim=1, largest=LARGEST).values.mean()
    else:
        l1 = diff.MEAN()
    return TOTAL
'''
_LOSS_GOOD = dict(DIR="(-torch.log((1 + cos) / 2)).mean()", TARGET="p_source", LARGEST="False", MEAN="mean",
                  TOTAL="lambda_clip * l_dir + lambda_l1 * w_text * l1")


def _loss(**changes):
    source = _LOSS
    for key, value in {**_LOSS_GOOD, **changes}.items():
        source = source.replace(key, value)
    return source


MISTAKES = [
    # f_t
    ("06.1", "Ft", _ft(ZERO_INIT="pass"), "exactly 0"),
    ("06.1", "Ft", _ft(KERNEL="3"), "3×3"),
    ("06.1", "Ft", _ft(EMB="0"), "must see t"),
    ("06.1", "Ft", _ft(NORM="nn.BatchNorm2d(hidden)"), "other images in the batch"),
    ("06.1", "Ft", _ft(TIMES="t = torch.full((h.shape[0],), t)"), "(N,) tensor"),
    ("06.1", "Ft", _ft(ZERO_INIT="pass", OUT="0 * self.conv_out(self.act(self.norm(z)))"), "no parameter gets a gradient"),
    ("06.1", "Ft", _ft(ZERO_INIT="nn.init.zeros_(self.conv_out.weight); nn.init.zeros_(self.conv_out.bias); "
                                 "self.conv_in.weight.requires_grad_(False)"), "frozen"),
    # L_dir
    ("06.2", "directional_loss", '''
def directional_loss(cos):
    return (1 + cos).mean()
''', "1 + cos"),
    ("06.2", "directional_loss", '''
def directional_loss(cos):
    return (1 - cos).mean()
''', "the slides' 1 − cos"),
    ("06.2", "directional_loss", '''
def directional_loss(cos):
    return (-torch.log((1 + cos) / 2)).sum()
''', "not the sum"),
    ("06.2", "directional_loss", '''
def directional_loss(cos):
    return -torch.log(1 + cos).mean()
''', "divide by 2"),
    # L_t
    ("06.2", "loss_t", _loss(TARGET="x_0"), "not with the training image x_0"),
    ("06.2", "loss_t", _loss(TOTAL="lambda_l1 * l_dir + lambda_clip * w_text * l1"), "swapped"),
    ("06.2", "loss_t", _loss(MEAN="sum"), "not the sum"),
    ("06.2", "loss_t", _loss(TOTAL="lambda_clip * l_dir + lambda_l1 * l1"), "weighted by w_text"),
    ("06.2", "loss_t", _loss(DIR="(1 + cos).mean()"), "1 + cos"),
    ("06.2", "loss_t", _loss(DIR="(-torch.log((1 + similarity(x_0, p_edit)) / 2)).mean()"), "similarity(P_t^edit, x_0)"),
    ("06.2", "loss_t", _loss(LARGEST="True"), "changes MOST"),
    ("06.2", "loss_t", _loss(TOTAL="(lambda_clip * l_dir + lambda_l1 * w_text * l1).item()"), "keep its graph"),
    # the optimiser step
    ("06.3", "optimizer_step", '''
def optimizer_step(loss, optimizer):
    loss.backward()
    optimizer.step()
''', "zero_grad"),
    ("06.3", "optimizer_step", '''
def optimizer_step(loss, optimizer):
    optimizer.zero_grad()
    optimizer.step()
    loss.backward()
''', "before backward()"),
    ("06.3", "optimizer_step", '''
def optimizer_step(loss, optimizer):
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
''', "have not moved"),
]
