"""What an objective needs of its guide beyond sampling it: checks made when the
objective is built, so that a guide that cannot serve is refused by name."""

from __future__ import annotations

from ppl._errors import PPLError
from ppl.marginals import Marginal
from ppl.normalize import Normalized


def check_exact_density(guide, objective: str, why: str) -> None:
    """Refuse a guide whose density is only estimated (``ppl.marginal``,
    ``ppl.normalize``) for an objective that needs its exact log density.

    Args:
        guide: the variational family.
        objective: the objective's name, for the message.
        why: what the objective needs the exact density for.

    Raises:
        PPLError: naming the objective, the guide and the objectives that work.

    Examples:
        >>> check_exact_density(guide, "vimco", "its leave-one-out baselines")
    """
    if isinstance(guide, (Marginal, Normalized)):
        raise PPLError(
            f"{objective} needs the exact log density of the guide at its own samples ({why}), "
            f"but {guide.name} has only an unbiased estimate of its density. Use vi.elbo, "
            "vi.iwelbo or vi.renyi with this family (their bounds stay valid with the "
            "estimate), or a guide whose density is exact."
        )
