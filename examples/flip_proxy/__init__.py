"""A worked example of adding a method (docs/ADDING_A_METHOD.md): a flip-only proxy task.

Each unlabeled image, translated, is shown as itself, flipped left-right and flipped
up-down; a 3-way head `flip` predicts which. Importing this package is the one registry entry;
`jax_flip_proxy.py` and `torch_flip_proxy.py` hold the maths, one file per framework.
"""

from sesemi_common.methods import TRANSLATED, Branch, MethodSpec, ProxyKnobs, register

register(MethodSpec(
    "flip_proxy",
    heads={"flip": 3},  # one extra linear head, `flip_head`, with 3 classes
    views_per_image=3,  # the backbone sees 3 forms of each unlabeled image
    view_params=TRANSLATED,  # one random translation per unlabeled image, drawn by the trainers
    branches=(Branch("flip", view="flips", heads=("flip",)),),  # the head `flip` on the view `flips`, with gradient
    knobs=ProxyKnobs,  # method.flip_proxy.weight and method.flip_proxy.rampup_steps
    module="examples.flip_proxy.{framework}_flip_proxy",
))
