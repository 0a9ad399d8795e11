"""clipedit-bench: a benchmark harness for text-guided image editing with CLIP and StyleGAN."""

__version__ = "0.1.0"
