"""The existing model of a first text-classification run: TF-IDF features and logistic regression (scikit-learn),
fit on the same training split and scored on the same test texts. A strong baseline for topic-like labels, where
words alone decide the class; a fine-tuned encoder has to beat it to be worth its cost."""

from __future__ import annotations

from typing import Any

import numpy as np

from dsf_dist.data import Splits


def joined(dataset: Any) -> list[str]:
    """Each text, with its second text after a separator for pairs."""
    if dataset.pairs is None:
        return list(dataset.texts)
    return [f"{text} [SEP] {pair}" for text, pair in zip(dataset.texts, dataset.pairs, strict=True)]


def tfidf_logistic_regression(
    datasets: Splits, C: float = 10.0, max_iter: int = 2000, ngram_max: int = 2, **kwargs: Any
) -> np.ndarray:
    """Class probabilities (N, C) for datasets.test: word uni- and bigrams (sublinear TF-IDF), logistic regression
    on the training split's label ids."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, ngram_max), sublinear_tf=True, **kwargs)
    train_x = vectorizer.fit_transform(joined(datasets.train))
    classifier = LogisticRegression(C=C, max_iter=max_iter).fit(train_x, datasets.train.labels)
    return classifier.predict(vectorizer.transform(joined(datasets.test)))
