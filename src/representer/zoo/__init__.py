"""Small reference models (``features`` → linear ``classifier``) and a seeded training loop."""

from .models import MLP, BasicConv, BiLSTMClassifier, BiLSTMFeatures, SmallCNN, Standardize
from .training import predict_logits, train_classifier

__all__ = ["MLP", "BasicConv", "BiLSTMClassifier", "BiLSTMFeatures", "SmallCNN", "Standardize", "predict_logits", "train_classifier"]
