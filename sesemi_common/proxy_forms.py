"""Which proxy forms a proxy-task method shows (`sesemi_{jax,torch}.methods.proxy`), from its registry entry.

The forms follow the method's own declaration, the classes of its `self` head, never its name: a method
that reuses the proxy module under another name gets the forms it declared, and one that
declares a count with no forms is refused instead of silently getting six."""

from __future__ import annotations

from .methods import MethodSpec

# Classes of the `self` head (forms per unlabeled image) -> the transforms' proxy name (transforms.PROXY_VIEWS in both frameworks).
PROXY_FORMS = {6: "rotate_flip", 4: "rotation"}


def proxy_forms(spec: MethodSpec) -> str:
    """'rotate_flip' (rotations 0/90/180/270, left-right and up-down flips) for a 6-way `self` head,
    'rotation' (the 4 rotations) for a 4-way one."""
    classes = spec.heads.get("self")
    if classes not in PROXY_FORMS:
        raise ValueError(f"method {spec.name!r} uses the proxy module with heads={spec.heads}: it needs a 'self' "
                         f"head of {' or '.join(map(str, PROXY_FORMS))} classes (the proxy forms it predicts)")
    return PROXY_FORMS[classes]
