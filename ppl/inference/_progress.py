"""Progress bars of the long-running drivers (MCMC, SMC), drawn by tqdm."""

from __future__ import annotations

from tqdm.auto import tqdm


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar of ``total`` steps named ``desc``, or ``None`` when disabled.

    Args:
        total: the number of steps.
        enabled: whether to show it.
        desc: its label (``"mcmc"``, ``"smc"``).

    Returns:
        A ``tqdm`` bar (call ``update(n)`` and ``close()``), or ``None``.

    Example:
        >>> bar = progress_bar(1000, True, "mcmc")
    """
    if not enabled:
        return None
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)
