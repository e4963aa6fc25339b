"""Wrong answers to notebook 05's exercise (the asymmetric step of eq. 4–5)."""

MISTAKES = [
    # ε̃ in D_t too: the symmetric step
    ("05.1", "asymmetric_step", '''
def asymmetric_step(hs, x_t, t, delta_h, alpha_t, alpha_prev):
    encoded = hs.encode(x_t, t)
    eps_edit = hs.decode(encoded, encoded.h + delta_h)
    p_t = (x_t - (1 - alpha_t).sqrt() * eps_edit) / alpha_t.sqrt()
    return alpha_prev.sqrt() * p_t + (1 - alpha_prev).sqrt() * eps_edit
''', "symmetric step"),
    # Δh subtracted
    ("05.1", "asymmetric_step", '''
def asymmetric_step(hs, x_t, t, delta_h, alpha_t, alpha_prev):
    encoded = hs.encode(x_t, t)
    eps = hs.decode(encoded)
    eps_edit = hs.decode(encoded, encoded.h - delta_h)
    p_t = (x_t - (1 - alpha_t).sqrt() * eps_edit) / alpha_t.sqrt()
    return alpha_prev.sqrt() * p_t + (1 - alpha_prev).sqrt() * eps
''', "Δh is subtracted"),
    # ᾱ_t in place of ᾱ_{t−1} in D_t
    ("05.1", "asymmetric_step", '''
def asymmetric_step(hs, x_t, t, delta_h, alpha_t, alpha_prev):
    eps_edit, eps = hs.eps(x_t, t, delta_h)
    p_t = (x_t - (1 - alpha_t).sqrt() * eps_edit) / alpha_t.sqrt()
    return alpha_prev.sqrt() * p_t + (1 - alpha_t).sqrt() * eps
''', "you used ᾱ_t"),
    # ε̃ from the unshifted h (Δh added after the decoder is never reached: decode() uses the encoder's own h)
    ("05.1", "asymmetric_step", '''
def asymmetric_step(hs, x_t, t, delta_h, alpha_t, alpha_prev):
    encoded = hs.encode(x_t, t)
    h_edit = encoded.h + delta_h
    eps = hs.decode(encoded)
    eps_edit = hs.decode(encoded)
    p_t = (x_t - (1 - alpha_t).sqrt() * eps_edit) / alpha_t.sqrt()
    return alpha_prev.sqrt() * p_t + (1 - alpha_prev).sqrt() * eps
''', "does not see Δh"),
    # the edit in the wrong term
    ("05.1", "asymmetric_step", '''
def asymmetric_step(hs, x_t, t, delta_h, alpha_t, alpha_prev):
    eps_edit, eps = hs.eps(x_t, t, delta_h)
    p_t = (x_t - (1 - alpha_t).sqrt() * eps) / alpha_t.sqrt()
    return alpha_prev.sqrt() * p_t + (1 - alpha_prev).sqrt() * eps_edit
''', "wrong term"),
    # the library's one-line step: not written from the equation
    ("05.1", "asymmetric_step", '''
def asymmetric_step(hs, x_t, t, delta_h, alpha_t, alpha_prev):
    from asyrp_lib.core import ddim
    eps_edit, eps = hs.eps(x_t, t, delta_h)
    return ddim.ddim_step(x_t, eps_edit, alpha_t, alpha_prev, eps_direction=eps).x_prev
''', "calls the library's ddim.ddim_step"),
]
