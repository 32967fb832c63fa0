"""Front ends: ONNX files and torch modules to the graph IR."""
