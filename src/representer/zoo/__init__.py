"""Small reference models (``features`` → linear ``classifier``) and a seeded training loop."""

from .models import MLP, BiLSTMClassifier, BiLSTMFeatures, SmallCNN
from .training import predict_logits, train_classifier

__all__ = ["MLP", "BiLSTMClassifier", "BiLSTMFeatures", "SmallCNN", "predict_logits", "train_classifier"]
