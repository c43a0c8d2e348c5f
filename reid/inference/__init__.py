"""A trained backbone used outside training: loading it with its preprocessing (`reid.inference.model`),
embedding image files (`reid.inference.images`) and exporting it to ONNX or TorchScript
(`reid.inference.export`)."""
