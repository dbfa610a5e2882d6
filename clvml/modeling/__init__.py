"""Estimators: LightGBM churn and value models, CLV (the BTYD baseline grows here)."""

from clvml.modeling.churn import ChurnModel
from clvml.modeling.clv import clv
from clvml.modeling.value import ValueModel

__all__ = ["ChurnModel", "ValueModel", "clv"]
