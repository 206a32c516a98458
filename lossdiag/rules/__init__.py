"""Rules: the catalogue of codes and the classifier that turns measurements into findings."""

from lossdiag.rules.catalogue import RULES, RULES_BY_NAME, Rule, lookup, rule_doc_markdown
from lossdiag.rules.classify import (
    BATCH_AXIS_CODES,
    PROBABILITY_LABELS,
    accepted,
    batch_axes,
    choose_probe,
    classify,
    findings_for,
    not_probed_hint,
    not_probed_message,
    relevant,
)

__all__ = [
    "BATCH_AXIS_CODES", "PROBABILITY_LABELS", "RULES", "RULES_BY_NAME", "Rule", "accepted", "batch_axes",
    "choose_probe", "classify", "findings_for", "lookup", "not_probed_hint", "not_probed_message", "relevant",
    "rule_doc_markdown",
]
