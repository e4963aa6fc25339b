"""Wrong answers to notebook 01's exercises (P_t, D_t, σ_t; one DDIM step; one inversion step)."""

MISTAKES = [
    ("01.1", "predicted_x0", '''
def predicted_x0(x_t, eps, alpha_t):
    return (x_t + (1 - alpha_t).sqrt() * eps) / alpha_t.sqrt()
''', "sign of the ε term"),
    ("01.1", "predicted_x0", '''
def predicted_x0(x_t, eps, alpha_t):
    return (x_t - (1 - alpha_t).sqrt() * eps) / alpha_t
''', "divide by √ᾱ_t"),
    ("01.1", "direction_to_xt", '''
def direction_to_xt(eps, alpha_prev, sigma=0.0):
    return (1 - alpha_prev - sigma).sqrt() * eps
''', "σ_t², not σ_t"),
    ("01.1", "direction_to_xt", '''
def direction_to_xt(eps, alpha_prev, sigma=0.0):
    return (1 - alpha_prev).sqrt() * eps
''', "ignores σ_t"),
    ("01.1", "ddim_sigma", '''
def ddim_sigma(alpha_t, alpha_prev, eta):
    return eta * ((1 - alpha_t) / (1 - alpha_prev)).sqrt() * (1 - alpha_t / alpha_prev).sqrt()
''', "upside down"),
    ("01.1", "ddim_sigma", '''
def ddim_sigma(alpha_t, alpha_prev, eta):
    return eta ** 2 * ((1 - alpha_prev) / (1 - alpha_t)).sqrt() * (1 - alpha_t / alpha_prev).sqrt()
''', "not η²"),
    # ᾱ_t in place of ᾱ_{t−1} in D_t
    ("01.2", "ddim_step", '''
def ddim_step(x_t, eps, alpha_t, alpha_prev, eta=0.0, noise=None):
    sigma = ddim_sigma(alpha_t, alpha_prev, eta)
    x_prev = alpha_prev.sqrt() * predicted_x0(x_t, eps, alpha_t) + direction_to_xt(eps, alpha_t, sigma)
    return x_prev + sigma * noise if eta > 0 else x_prev
''', "you used ᾱ_t"),
    ("01.2", "ddim_step", '''
def ddim_step(x_t, eps, alpha_t, alpha_prev, eta=0.0, noise=None):
    sigma = ddim_sigma(alpha_t, alpha_prev, eta)
    return alpha_prev.sqrt() * predicted_x0(x_t, eps, alpha_t) + direction_to_xt(eps, alpha_prev, sigma)
''', "add the noise σ_t·z"),
    ("01.2", "ddim_step", '''
def ddim_step(x_t, eps, alpha_t, alpha_prev, eta=0.0, noise=None):
    x_prev = alpha_prev.sqrt() * predicted_x0(x_t, eps, alpha_t) + direction_to_xt(eps, alpha_prev)
    return x_prev + ddim_sigma(alpha_t, alpha_prev, eta) * noise if eta > 0 else x_prev
''', "look at the σ_t term"),
    ("01.3", "inversion_step", '''
def inversion_step(x_prev, eps, alpha_prev, alpha_t):
    return alpha_t.sqrt() * predicted_x0(x_prev, eps, alpha_t) + (1 - alpha_t).sqrt() * eps
''', "use ᾱ_{t−1} inside P"),
    ("01.3", "inversion_step", '''
def inversion_step(x_prev, eps, alpha_prev, alpha_t):
    return alpha_t.sqrt() * predicted_x0(x_prev, eps, alpha_prev) - (1 - alpha_t).sqrt() * eps
''', "sign of the ε term"),
]
