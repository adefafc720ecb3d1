"""Evaluation: splits, metrics, protocols, the champion/challenger gate, the quality benchmark."""
from recsys.evaluate.gate import GateDecision, decide
from recsys.evaluate.protocol import evaluate_model, sampled_protocol

__all__ = ["GateDecision", "decide", "evaluate_model", "sampled_protocol"]
