"""Explanations: SHAP and LIME out of core, permutation importance, gradient attributions (captum), plots."""

from bigdl.explain._gradients import attributions, integrated_gradients, plot_saliency, saliency
from bigdl.explain._lime import LimeExplanation, lime, plot_lime
from bigdl.explain._permutation import permutation_importance, plot_importance
from bigdl.explain._shap import ShapExplanation, shap_values
from bigdl.explain._shap_plots import plot_shap_images, plot_shap_summary, plot_shap_waterfall

__all__ = ["permutation_importance", "plot_importance", "integrated_gradients", "saliency", "attributions",
           "plot_saliency", "shap_values", "ShapExplanation", "plot_shap_summary", "plot_shap_waterfall",
           "plot_shap_images", "lime", "LimeExplanation", "plot_lime"]
