"""dctq: PyTorch to INT8 inference engines that read JPEG DCT coefficients directly.

Kept free of imports and side effects: pytest may import this file a second time under the
checkout folder's name (see ARCHITECTURE.md), and `import dctq` must stay cheap for the CLI.
"""

__version__ = "0.1.0"
