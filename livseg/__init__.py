"""livseg: liver and liver-tumour segmentation of abdominal CT on Ray."""

__version__ = "0.1.0"
