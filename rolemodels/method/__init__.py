"""The paper's ideas as functions over arrays and tensors: noise, who teaches what (teach), combining
teachers (combine), samplers that are not networks, diagnostics and metrics. docs/architecture.md maps
the layers."""
