"""Models: timm backbones (and sladkit's tiny pair), shared LoRA adapters, task heads."""
