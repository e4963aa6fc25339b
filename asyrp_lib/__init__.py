"""asyrp_lib: semantic image editing in the h-space of diffusion models (Asyrp), for the asyrp-course notebooks.

Modules, in course order: ``ddim`` (01), ``clip`` (02), ``perceptual`` (03), ``naive`` (04), ``hspace`` and
``editing`` (05), ``delta_net`` and ``train`` (06), ``intervals`` and ``pipeline`` (07), ``widgets`` (08),
``directions`` (09); ``profiles`` loads the models, ``toyworld`` is the offline face world.
"""
__version__ = "0.1.0"
