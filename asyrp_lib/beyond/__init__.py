"""Beyond the paper: additions around the method and other ways to edit in the same h-space, measured side by side
on the toy world.

``retry``: the checks after an edit (CLIP gain, ``keep``); ``directions``: properties of the shipped directions and
unsupervised directions (PCA of h, the Jacobian's top singular vectors); ``compare``: the paper's methods side by
side; ``boundary``: a linear boundary in h (Zhu et al., BoundaryDiffusion, NeurIPS 2023); ``pullback``: the
directions of x_t that move h most (Park et al., NeurIPS 2023); ``injection``: content injection by slerp of h
(Jeong et al., WACV 2024); ``methods``: one evaluation of every h-space method on the same held-out faces.
"""
