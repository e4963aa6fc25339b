"""The paper's method, in the order the course teaches it: ``ddim`` (eq. 1–2), ``hspace`` (the U-Net split at h),
``process`` (the asymmetric step, eq. 4–5, and the generative process, eq. 6), ``loss`` and ``clip_loss`` (eq. 3
and the L1 term), ``delta_net`` (f_t) and ``train``, ``intervals`` (t_edit and t_boost), ``editing`` (optimising
one Δh), ``naive`` (the baselines the paper argues against), ``pipeline`` (the editor), ``cache`` (inversions on
disk). The core imports only itself and the package's layer-0 helpers; see ARCHITECTURE.md."""
