"""Explanations: out-of-core permutation importance, gradient attributions (captum), plots."""

from bigdl.explain._gradients import attributions, integrated_gradients, plot_saliency, saliency
from bigdl.explain._permutation import permutation_importance, plot_importance

__all__ = ["permutation_importance", "plot_importance", "integrated_gradients", "saliency", "attributions",
           "plot_saliency"]
