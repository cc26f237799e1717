"""What only the TensorRT paths need: CUDA memory through cuda-python (:mod:`.cuda_memory`, used by
the TensorRT backend) and the optimisation-profile rule (:mod:`.profile`, shared by
``dlcv-export --trt`` and onnxruntime's TensorRT provider). Nothing here imports TensorRT or
cuda-python at module level.
"""
