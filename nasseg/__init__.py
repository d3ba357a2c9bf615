"""nasseg: neural-architecture search and ablation replay for real-time semantic segmentation."""

__version__ = "0.1.0"
