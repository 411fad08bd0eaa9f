"""The classifier: ``TriageModel`` (one class, ONNX int8 and torch backends), its folder format, the base
encoder, the character n-gram blend, the keyword rules and the ONNX export. Torch and onnxruntime are only
imported when a backend is loaded."""

from helpdesk_triage.model.triage_model import TriageModel, load_classifier

__all__ = ["TriageModel", "load_classifier"]
