"""qat: quantization-aware training (plain learnable-range QAT and ODM); see qat/__init__ once written."""
