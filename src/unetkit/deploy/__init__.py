"""Models that leave the process: graphs for ONNX (graphs, click_graph), their check against PyTorch
(parity), the export command (export), ONNX engines behind a Segmenter (engines) and Triton (triton)."""
