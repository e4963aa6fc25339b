"""Beyond the paper: other ways to edit in the same h-space, measured side by side on the toy world.

``boundary``: a linear boundary in h (Zhu et al., BoundaryDiffusion, NeurIPS 2023); ``pullback``: the
directions of x_t that move h most (Park et al., NeurIPS 2023); ``injection``: content injection by slerp of h
(Jeong et al., WACV 2024); ``methods``: one evaluation of every h-space method on the same held-out faces,
measured with :mod:`asyrp_lib.evaluate`.
"""
