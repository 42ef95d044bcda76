"""``evaluate`` metric for multi-label emotion tagging scored at top-k.

Load it by path so it works offline: ``evaluate.load("<...>/meralign/metrics/multilabel_emotion")``
(or ``meralign.metrics.load_metric()``). The computation lives in ``topk_metrics.py`` next to this
file, which ``evaluate`` copies along with the script.
"""

import datasets
import evaluate

from .topk_metrics import multilabel_topk_metrics

_DESCRIPTION = """\
Multi-label emotion metrics of a score matrix [N, L] against multi-hot references [N, L]. Each row's
predicted set is its top_k highest-scoring labels (ties to the lower label index). Macro
precision/recall/F1 average over all L labels (scikit-learn average="macro", zero_division=0);
micro F1 pools all labels. ROC-AUC and PR-AUC (average precision) are macro averages over the
labels with at least one positive and one negative row; the number of skipped labels is reported.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: list of N score rows (floats, L each), higher = more likely.
    references: list of N multi-hot rows (0/1, L each).
    top_k (int): labels predicted per row, in [1, L].
    labels (list of str, optional): names of the L labels, keys of per_label_f1.
Returns:
    macro_precision, macro_recall, macro_f1, micro_f1, per_label_f1 (dict or list),
    roc_auc_macro, pr_auc_macro, n_auc_labels, n_auc_labels_skipped, top_k, n_rows, n_labels.
Example:
    >>> metric = evaluate.load("meralign/metrics/multilabel_emotion")
    >>> metric.compute(predictions=[[0.9, 0.1, 0.5]], references=[[1, 0, 0]], top_k=1)["macro_f1"]
    0.3333333333333333
"""

_CITATION = """\
@article{meralign-metric,
  title = {Leveraging LLM Embeddings for Cross Dataset Label Alignment and Zero Shot Music Emotion Prediction},
  note = {arXiv:2410.11522; metric protocol: macro F1 at top-k}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilabelEmotion(evaluate.Metric):
    """Top-k multi-label metrics; float64 features so that scores are not rounded on the way in."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # References travel as float64 too: an int feature would silently truncate a wrong 0.5
            # on the way in, and the binary check below could not see it.
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("float64")),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2410.11522"],
        )

    def _compute(self, predictions, references, top_k=None, labels=None):
        if top_k is None:
            raise ValueError("top_k is required: pass top_k=<labels predicted per row> to compute()")
        return multilabel_topk_metrics(predictions, references, top_k=top_k, labels=labels)
