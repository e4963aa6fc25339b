"""Wrong answers to notebook 07's exercise (the phase of each step of eq. 6 and its η)."""

MISTAKES = [
    ("07.1", "eta_of", '''
def eta_of(phase, eta_boost=1.0):
    return 0.0
''', "not 0"),
    ("07.1", "eta_of", '''
def eta_of(phase, eta_boost=1.0):
    return 0.0 if phase == "edit" else eta_boost
''', "plain phase is deterministic"),
    ("07.1", "eta_of", '''
def eta_of(phase, eta_boost=1.0):
    return 1.0 if phase == "boost" else 0.0
''', "the eta_boost it is given"),
    ("07.1", "phase_of", '''
def phase_of(t, t_edit, t_boost):
    if t > t_edit:
        return "edit"
    if t < t_boost:
        return "boost"
    return "plain"
''', "t = t_edit is still an edit step"),
    ("07.1", "phase_of", '''
def phase_of(t, t_edit, t_boost):
    if t >= t_edit:
        return "edit"
    if t <= t_boost:
        return "boost"
    return "plain"
''', "t = t_boost is still a plain DDIM step"),
    ("07.1", "phase_of", '''
def phase_of(t, t_edit, t_boost):
    if t >= t_edit:
        return "boost"
    if t < t_boost:
        return "edit"
    return "plain"
''', "the phases are swapped"),
    ("07.1", "phase_of", '''
def phase_of(t, t_edit, t_boost):
    if t >= t_edit:
        return "edit"
    if t >= t_boost:
        return "DDIM"
    return "boost"
''', "'edit', 'plain', 'boost'"),
]
