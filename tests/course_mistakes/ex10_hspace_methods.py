"""Wrong answers to notebook 10's exercises (content injection's slerp; the boundary's edit Δh = c · d · n)."""

MISTAKES = [
    # the linear blend: the norm dips between the two
    ("10.1", "slerp", '''
def slerp(a, b, gamma):
    return (1 - gamma) * a + gamma * b
''', "you interpolated linearly"),
    # the weights swapped: γ = 0 gives the content
    ("10.1", "slerp", '''
def slerp(a, b, gamma):
    fa, fb = a.flatten(1), b.flatten(1)
    na, nb = fa.norm(dim=1, keepdim=True), fb.norm(dim=1, keepdim=True)
    theta = torch.arccos(((fa / na) * (fb / nb)).sum(1, keepdim=True).clamp(-1, 1))
    wa = torch.sin(gamma * theta) / torch.sin(theta)
    wb = torch.sin((1 - gamma) * theta) / torch.sin(theta)
    out = (wa * fa / na + wb * fb / nb) * ((1 - gamma) * na + gamma * nb)
    return out.view(a.shape)
''', "at γ = 0 you must return a (h itself)"),
    # the textbook formula on the raw rows: right only for equal norms
    ("10.1", "slerp", '''
def slerp(a, b, gamma):
    fa, fb = a.flatten(1), b.flatten(1)
    cos = (fa * fb).sum(1, keepdim=True) / (fa.norm(dim=1, keepdim=True) * fb.norm(dim=1, keepdim=True))
    theta = torch.arccos(cos.clamp(-1, 1))
    s = torch.sin(theta)
    near = s.abs() < 1e-6
    wa = torch.where(near, 1 - gamma, torch.sin((1 - gamma) * theta) / s.clamp_min(1e-12))
    wb = torch.where(near, torch.full_like(s, gamma), torch.sin(gamma * theta) / s.clamp_min(1e-12))
    return (wa * fa + wb * fb).view(a.shape)
''', "slerp the unit vectors a/‖a‖ and b/‖b‖"),
    # no fallback where θ = 0: 0 / 0
    ("10.1", "slerp", '''
def slerp(a, b, gamma):
    fa, fb = a.flatten(1), b.flatten(1)
    na, nb = fa.norm(dim=1, keepdim=True), fb.norm(dim=1, keepdim=True)
    theta = torch.arccos(((fa / na) * (fb / nb)).sum(1, keepdim=True).clamp(-1, 1))
    s = torch.sin(theta)
    out = (torch.sin((1 - gamma) * theta) / s * fa / na + torch.sin(gamma * theta) / s * fb / nb)
    return (out * ((1 - gamma) * na + gamma * nb)).view(a.shape)
''', "fall back to the linear blend"),
    # θ from the raw dot product
    ("10.1", "slerp", '''
def slerp(a, b, gamma):
    fa, fb = a.flatten(1), b.flatten(1)
    na, nb = fa.norm(dim=1, keepdim=True), fb.norm(dim=1, keepdim=True)
    theta = torch.arccos((fa * fb).sum(1, keepdim=True))
    s = torch.sin(theta)
    out = (torch.sin((1 - gamma) * theta) / s * fa / na + torch.sin(gamma * theta) / s * fb / nb)
    return (out * ((1 - gamma) * na + gamma * nb)).view(a.shape)
''', "divide the dot product by both norms"),
    # the whole batch as one vector
    ("10.1", "slerp", '''
def slerp(a, b, gamma):
    fa, fb = a.flatten(), b.flatten()
    na, nb = fa.norm(), fb.norm()
    theta = torch.arccos(((fa / na) @ (fb / nb)).clamp(-1, 1))
    s = torch.sin(theta)
    if s.abs() < 1e-6:
        return (1 - gamma) * a + gamma * b
    out = torch.sin((1 - gamma) * theta) / s * fa / na + torch.sin(gamma * theta) / s * fb / nb
    return (out * ((1 - gamma) * na + gamma * nb)).view(a.shape)
''', "each row is its own vector"),
    # w taken as the unit normal
    ("10.2", "boundary_delta", '''
def boundary_delta(h, labels, normal, c):
    proj = h.flatten(1) @ normal.flatten()
    d = proj[labels].mean() - proj[~labels].mean()
    return c * d * normal
''', "*unit* normal"),
    # the classes the wrong way round
    ("10.2", "boundary_delta", '''
def boundary_delta(h, labels, normal, c):
    n = normal / normal.norm()
    proj = h.flatten(1) @ n.flatten()
    return c * (proj[~labels].mean() - proj[labels].mean()) * n
''', "points away from the attribute"),
    # the length of the mean difference, not its projection
    ("10.2", "boundary_delta", '''
def boundary_delta(h, labels, normal, c):
    n = normal / normal.norm()
    return c * (h[labels].mean(0) - h[~labels].mean(0)).norm() * n
''', "d is measured along n"),
    # every face moved: h + Δh
    ("10.2", "boundary_delta", '''
def boundary_delta(h, labels, normal, c):
    n = normal / normal.norm()
    proj = h.flatten(1) @ n.flatten()
    return h + c * (proj[labels].mean() - proj[~labels].mean()) * n
''', "return Δh alone"),
    # c forgotten
    ("10.2", "boundary_delta", '''
def boundary_delta(h, labels, normal, c):
    n = normal / normal.norm()
    proj = h.flatten(1) @ n.flatten()
    return (proj[labels].mean() - proj[~labels].mean()) * n
''', "multiply by the strength c"),
]
