"""Wrong answers to notebook 03's exercises (the curves ξ_t and γ_t; choosing t_edit and t_boost)."""

MISTAKES = [
    # LPIPS to x_t in place of P_t
    ("03.1", "lpips_curves", '''
def lpips_curves(distance, x, p_ts, x_ts):
    gamma = torch.stack([distance(x, x_t) for x_t in x_ts])
    return gamma[0] - gamma, gamma
''', "not with the noisy x_t"),
    ("03.1", "lpips_curves", '''
def lpips_curves(distance, x, p_ts, x_ts):
    d_T = distance(x, p_ts[0])
    xi = torch.stack([d_T - distance(x, x_t) for x_t in x_ts])
    return xi, torch.stack([distance(x, x_t) for x_t in x_ts])
''', "in place of the distance to P_t"),
    # ξ with the sign flipped
    ("03.1", "lpips_curves", '''
def lpips_curves(distance, x, p_ts, x_ts):
    d_T = distance(x, p_ts[0])
    return (torch.stack([distance(x, p) - d_T for p in p_ts]),
            torch.stack([distance(x, x_t) for x_t in x_ts]))
''', "opposite sign"),
    ("03.1", "lpips_curves", '''
def lpips_curves(distance, x, p_ts, x_ts):
    return (torch.stack([distance(x, p) for p in p_ts]), torch.stack([distance(x, x_t) for x_t in x_ts]))
''', "is LPIPS(x, P_t) itself"),
    ("03.1", "lpips_curves", '''
def lpips_curves(distance, x, p_ts, x_ts):
    d_T = distance(x, p_ts[-1])
    return (torch.stack([d_T - distance(x, p) for p in p_ts]), torch.stack([distance(x, x_t) for x_t in x_ts]))
''', "*first* entry of p_ts"),
    # γ from the predictions
    ("03.1", "lpips_curves", '''
def lpips_curves(distance, x, p_ts, x_ts):
    d_T = distance(x, p_ts[0])
    return (torch.stack([d_T - distance(x, p) for p in p_ts]), torch.stack([distance(x, p) for p in p_ts]))
''', "γ_t = LPIPS(x, x_t) compares x with the noisy x_t"),
    ("03.1", "lpips_curves", '''
def lpips_curves(distance, x, p_ts, x_ts):
    d_T = distance(x, p_ts[0])
    return (torch.stack([distance(x, x_t) for x_t in x_ts]), torch.stack([d_T - distance(x, p) for p in p_ts]))
''', "swapped"),
    ("03.1", "lpips_curves", '''
def lpips_curves(distance, x, p_ts, x_ts):
    d_T = distance(x, p_ts[0])
    return (torch.stack([d_T - distance(x, p) for p in p_ts]).T, torch.stack([distance(x, x_t) for x_t in x_ts]).T)
''', "one row per timestep"),
    # > where ≥ is meant
    ("03.2", "first_reaching", '''
def first_reaching(timesteps, curve, threshold):
    mean = torch.as_tensor(curve).mean(1)
    for t, m in sorted(zip(timesteps, mean.tolist())):
        if m > threshold:
            return t
    raise ValueError("never reached")
''', "> where ≥ is meant"),
    # the last crossing instead of the first
    ("03.2", "first_reaching", '''
def first_reaching(timesteps, curve, threshold):
    pairs = sorted(zip(timesteps, torch.as_tensor(curve).mean(1).tolist()))
    found = None
    for (t0, m0), (t1, m1) in zip(pairs, pairs[1:]):
        if m0 < threshold <= m1:
            found = t1
    if pairs[0][1] >= threshold:
        found = found or pairs[0][0]
    if found is None:
        raise ValueError("never reached")
    return found
''', "later crossing"),
    # the timesteps taken in the order given (they descend): the largest t that reaches the threshold
    ("03.2", "first_reaching", '''
def first_reaching(timesteps, curve, threshold):
    for t, m in zip(timesteps, torch.as_tensor(curve).mean(1).tolist()):
        if m >= threshold:
            return t
    raise ValueError("never reached")
''', "largest timestep"),
    ("03.2", "first_reaching", '''
def first_reaching(timesteps, curve, threshold):
    for t, row in sorted(zip(timesteps, torch.as_tensor(curve).tolist())):
        if max(row) >= threshold:
            return t
    raise ValueError("never reached")
''', "*mean* curve"),
    ("03.2", "first_reaching", '''
def first_reaching(timesteps, curve, threshold):
    for t, m in sorted(zip(timesteps, torch.as_tensor(curve).mean(1).tolist())):
        if m >= threshold:
            return t
    return None
''', "raise a ValueError"),
    # t_boost from the wrong curve
    ("03.2", "select_t_edit_t_boost", '''
def select_t_edit_t_boost(timesteps, lpips_pt, gamma, edit_threshold, boost_threshold):
    return (first_reaching(timesteps, lpips_pt, edit_threshold),
            first_reaching(timesteps, lpips_pt, boost_threshold))
''', "t_boost comes from γ_t"),
    ("03.2", "select_t_edit_t_boost", '''
def select_t_edit_t_boost(timesteps, lpips_pt, gamma, edit_threshold, boost_threshold):
    return (first_reaching(timesteps, gamma, edit_threshold),
            first_reaching(timesteps, gamma, boost_threshold))
''', "t_edit comes from LPIPS(x, P_t)"),
    ("03.2", "select_t_edit_t_boost", '''
def select_t_edit_t_boost(timesteps, lpips_pt, gamma, edit_threshold, boost_threshold):
    return (first_reaching(timesteps, lpips_pt, boost_threshold),
            first_reaching(timesteps, gamma, edit_threshold))
''', "its own threshold"),
    ("03.2", "select_t_edit_t_boost", '''
def select_t_edit_t_boost(timesteps, lpips_pt, gamma, edit_threshold, boost_threshold):
    return (first_reaching(timesteps, gamma, boost_threshold),
            first_reaching(timesteps, lpips_pt, edit_threshold))
''', "in this order"),
]
