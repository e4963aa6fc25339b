"""asyrp_lib: semantic image editing in the h-space of diffusion models (Asyrp), for the asyrp-course notebooks.

Modules, in course order: ``ddim`` (01), ``clip`` (02), ``perceptual`` (03), ``naive`` (04), ``hspace``,
``editing``, ``process`` and ``loss`` (05), ``delta_net`` and ``train`` (06), ``intervals`` and ``pipeline``
(07), ``widgets`` (08), ``directions`` (09). Around them: ``profiles`` and ``unets`` load the models, ``cache``
keeps inversions and curves on disk, ``images`` reads image files, ``plotting`` draws, ``evaluate`` measures
edits in the toy world, whose faces come from ``toyworld`` (with ``toyattributes`` and its ``oracle``); ``cli``
is the ``asyrp`` command.
"""
__version__ = "0.1.0"
