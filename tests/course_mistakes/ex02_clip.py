"""Wrong answers to notebook 02's exercise (the directional CLIP loss)."""

MISTAKES = [
    ("02.1", "directional_clip_loss", '''
def directional_clip_loss(img_edit, img_source, txt_target, txt_source):
    return 1 + F.cosine_similarity(img_edit - img_source, txt_target - txt_source, dim=-1)
''', "look at the signs"),
    # ΔI reversed: E_I(source) − E_I(edit)
    ("02.1", "directional_clip_loss", '''
def directional_clip_loss(img_edit, img_source, txt_target, txt_source):
    return 1 - F.cosine_similarity(img_source - img_edit, txt_target - txt_source, dim=-1)
''', "ΔI = E_I(edit) − E_I(source)"),
    # ΔT reversed: E_T(source) − E_T(target)
    ("02.1", "directional_clip_loss", '''
def directional_clip_loss(img_edit, img_source, txt_target, txt_source):
    return 1 - F.cosine_similarity(img_edit - img_source, txt_source - txt_target, dim=-1)
''', "ΔT = E_T(target) − E_T(source)"),
    ("02.1", "directional_clip_loss", '''
def directional_clip_loss(img_edit, img_source, txt_target, txt_source):
    return 1 - ((img_edit - img_source) * (txt_target - txt_source)).sum(-1)
''', "plain dot product"),
    ("02.1", "directional_clip_loss", '''
def directional_clip_loss(img_edit, img_source, txt_target, txt_source):
    return 1 - F.cosine_similarity(img_edit, txt_target, dim=-1)
''', "plain CLIP loss"),
    ("02.1", "directional_clip_loss", '''
def directional_clip_loss(img_edit, img_source, txt_target, txt_source):
    return F.cosine_similarity(img_edit - img_source, txt_target - txt_source, dim=-1)
''', "the loss is 1 − cos(ΔI, ΔT)"),
    ("02.1", "directional_clip_loss", '''
def directional_clip_loss(img_edit, img_source, txt_target, txt_source):
    return (1 - F.cosine_similarity(img_edit - img_source, txt_target - txt_source, dim=-1)).mean()
''', "one loss per image"),
    ("02.1", "directional_clip_loss", '''
def directional_clip_loss(img_edit, img_source, txt_target, txt_source):
    return 1 - F.cosine_similarity(img_edit - img_source, txt_target, dim=-1)
''', "yours uses E_T(target) alone"),
]
