"""The chips' latent Gaussian space: :class:`LatentChips` maps standard-normal vectors to chips
exactly (``chip = f(z)``, ``z ~ N(0, I)``), and the gradient objectives defined on that space
(:class:`MarginObjective` for the worst-case search, :func:`soft_count_gradient` for the tail
estimators' design points)."""

from reliability.cim.latent.chips import LatentChips
from reliability.cim.latent.objectives import SEARCHABLE_BLOCKS, MarginObjective, soft_count_gradient

__all__ = ["LatentChips", "MarginObjective", "SEARCHABLE_BLOCKS", "soft_count_gradient"]
