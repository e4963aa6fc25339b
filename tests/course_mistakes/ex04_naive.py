"""Wrong answers to notebook 04's exercise (the ε-shift in both terms of one DDIM step; its coefficients)."""

MISTAKES = [
    # Δε in P_t only: the asymmetric step, not the naive edit
    ("04.1", "eps_shift_step", '''
def eps_shift_step(x_t, eps, delta_eps, alpha_t, alpha_prev):
    p_t = (x_t - (1 - alpha_t).sqrt() * (eps + delta_eps)) / alpha_t.sqrt()
    return alpha_prev.sqrt() * p_t + (1 - alpha_prev).sqrt() * eps
''', "asymmetric step"),
    # the sign of Δε flipped
    ("04.1", "eps_shift_step", '''
def eps_shift_step(x_t, eps, delta_eps, alpha_t, alpha_prev):
    shifted = eps - delta_eps
    p_t = (x_t - (1 - alpha_t).sqrt() * shifted) / alpha_t.sqrt()
    return alpha_prev.sqrt() * p_t + (1 - alpha_prev).sqrt() * shifted
''', "sign of Δε"),
    # ᾱ_t in place of ᾱ_{t−1} in D_t
    ("04.1", "eps_shift_step", '''
def eps_shift_step(x_t, eps, delta_eps, alpha_t, alpha_prev):
    shifted = eps + delta_eps
    p_t = (x_t - (1 - alpha_t).sqrt() * shifted) / alpha_t.sqrt()
    return alpha_prev.sqrt() * p_t + (1 - alpha_t).sqrt() * shifted
''', "you used ᾱ_t"),
    # ᾱ_t in place of ᾱ_{t−1} everywhere outside P_t: the step returns x_t
    ("04.1", "eps_shift_step", '''
def eps_shift_step(x_t, eps, delta_eps, alpha_t, alpha_prev):
    shifted = eps + delta_eps
    p_t = (x_t - (1 - alpha_t).sqrt() * shifted) / alpha_t.sqrt()
    return alpha_t.sqrt() * p_t + (1 - alpha_t).sqrt() * shifted
''', "gives x_t back"),
    # the sign of the P_t term's coefficient flipped: the two terms would add
    ("04.1", "shift_coefficients", '''
def shift_coefficients(alpha_t, alpha_prev):
    return alpha_prev.sqrt() * (1 - alpha_t).sqrt() / alpha_t.sqrt(), (1 - alpha_prev).sqrt()
''', "sign of coef_p"),
    # ᾱ_t in place of ᾱ_{t−1} in D_t's coefficient
    ("04.1", "shift_coefficients", '''
def shift_coefficients(alpha_t, alpha_prev):
    return -alpha_prev.sqrt() * (1 - alpha_t).sqrt() / alpha_t.sqrt(), (1 - alpha_t).sqrt()
''', "you used ᾱ_t"),
    # the coefficient of ΔP_t, without the factor √ᾱ_{t−1} of the P_t term
    ("04.1", "shift_coefficients", '''
def shift_coefficients(alpha_t, alpha_prev):
    return -(1 - alpha_t).sqrt() / alpha_t.sqrt(), (1 - alpha_prev).sqrt()
''', "multiply by √ᾱ_{t−1}"),
]

MISTAKES += [
    # gradients never cleared: they add up over the iterations
    ("04.2", "optimize_xT_loop", '''
def optimize_xT_loop(x_T_init, sample, loss_fn, iters, lr):
    x_T = x_T_init.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x_T], lr=lr)
    losses = []
    for _ in range(iters):
        loss = loss_fn(sample(x_T))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return x_T.detach(), losses
''', "zero_grad"),
    # gradient ascent
    ("04.2", "optimize_xT_loop", '''
def optimize_xT_loop(x_T_init, sample, loss_fn, iters, lr):
    x_T = x_T_init.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x_T], lr=lr)
    losses = []
    for _ in range(iters):
        loss = loss_fn(sample(x_T))
        optimizer.zero_grad()
        (-loss).backward()
        optimizer.step()
        losses.append(loss.item())
    return x_T.detach(), losses
''', "climbs the loss"),
    # the inverted x_T itself optimised, in place
    ("04.2", "optimize_xT_loop", '''
def optimize_xT_loop(x_T_init, sample, loss_fn, iters, lr):
    x_T = x_T_init.requires_grad_(True)
    optimizer = torch.optim.Adam([x_T], lr=lr)
    losses = []
    for _ in range(iters):
        loss = loss_fn(sample(x_T))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return x_T.detach(), losses
''', "changed x_T_init itself"),
    # the loss recorded after the step
    ("04.2", "optimize_xT_loop", '''
def optimize_xT_loop(x_T_init, sample, loss_fn, iters, lr):
    x_T = x_T_init.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x_T], lr=lr)
    losses = []
    for _ in range(iters):
        optimizer.zero_grad()
        loss_fn(sample(x_T)).backward()
        optimizer.step()
        with torch.no_grad():
            losses.append(loss_fn(sample(x_T)).item())
    return x_T.detach(), losses
''', "before the step"),
]
