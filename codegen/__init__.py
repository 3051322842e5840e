"""Code generation: checked IR -> PyTorch modules (``torch_backend``) and Triton kernels
(``linarch.kernels``)."""
